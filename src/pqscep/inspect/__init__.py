"""The SCEP/CMS inspector behind `pqscep inspect`: decode a SCEP message or any CMS ContentInfo
(or a CSR, certificate, CRL) into a tree of JSON-ready nodes, verify its signatures, and with
private keys or passwords decrypt its envelopes and recurse into what they hold.

Everything is table-driven so that new structures are one more entry:
- `CONTENT_TYPES` (inspector): ContentInfo contentType -> decoder (SignedData, EnvelopedData,
  AuthEnvelopedData, data);
- `RECIPIENT_INFOS` (recipient_infos): RecipientInfo CHOICE tag -> decoder (ktri 0x30, kari
  0xA1, kekri 0xA2, pwri 0xA3, ori 0xA4), and `OTHER_RECIPIENT_INFOS`: oriType -> decoder
  (id-ori-kem: RFC 9629 KEMRecipientInfo);
- `RECIPIENT_FACTORIES` (envelopes): key family -> the `cms.enveloped` recipients that decrypt
  with such a key (RSA: KeyTransRecipient; ML-KEM: the KEM recipient);
- `ATTRIBUTES` (attributes): attribute OID -> (name, value decoder);
- `PAYLOADS` (payloads): sniffers for what an envelope or eContent may hold (ContentInfo,
  PKCS#10, certificate, CRL, IssuerAndSubject, IssuerAndSerialNumber).

`read_input` turns DER, PEM or base64 into DER; `load_key_entries` reads keys and certificates;
`inspect_der` runs an inspection into an `InspectionReport` (its `to_json` is the --json output);
`render` makes the text tree.
"""

from .attributes import ATTRIBUTES, attribute_nodes
from .envelopes import RECIPIENT_FACTORIES
from .inspector import CONTENT_TYPES, MAX_DEPTH, Inspector
from .keys import KeyEntry, load_key_entries, load_key_file, passphrase_from_env
from .payloads import PAYLOADS
from .reader import InputError, read_input
from .recipient_infos import OTHER_RECIPIENT_INFOS, RECIPIENT_INFOS
from .render import render
from .report import InspectionReport, inspect_der

__all__ = [
    "ATTRIBUTES",
    "CONTENT_TYPES",
    "MAX_DEPTH",
    "OTHER_RECIPIENT_INFOS",
    "PAYLOADS",
    "RECIPIENT_FACTORIES",
    "RECIPIENT_INFOS",
    "InputError",
    "InspectionReport",
    "Inspector",
    "KeyEntry",
    "attribute_nodes",
    "inspect_der",
    "load_key_entries",
    "load_key_file",
    "passphrase_from_env",
    "read_input",
    "render",
]
