"""The draft's ASN.1 module, compiled by an independent tool (asn1tools), for tests/test_draft_asn1.py.

The draft (docs/draft/draft-pqscep-scep-pq-update.md) is the source of truth: its ``~~~ asn.1``
blocks are read at run time, never copied here. What this helper adds is only what the draft
imports or what a test needs to reach the draft's structures inside whole SCEP messages:

* ``PKIX1Explicit88``: AlgorithmIdentifier and SubjectPublicKeyInfo of RFC 5280 section 4.1 (the
  module the draft's IMPORTS names), plus Name and a shallow Certificate.
* the CMS types of RFC 5652, RFC 5083, RFC 9629, the PKCS #10 request of RFC 2986, the RFC 9883
  statement, RFC 5958 keys and the SCEP attribute syntaxes of RFC 8894 section 3.2.1,
  written from those RFCs as plain ASN.1 text (sections cited beside each type).

The draft's text goes through the few rewrites of `preprocess_module` and `reference_module`, each
one explained there; nothing else of it is changed.

asn1tools (not the project's own cryptography-based classes, nor pyasn1-alt-modules) compiles it
all with its DER codec, so a decode followed by an identical re-encode shows that the draft's
definitions describe exactly the bytes the code produces: tags, order, optionality and types.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import asn1tools

ROOT = Path(__file__).resolve().parent.parent
DRAFT = ROOT / "docs" / "draft" / "draft-pqscep-scep-pq-update.md"

DRAFT_MODULE = "PQ-SCEP-2026"
CMP_MODULE = "PKIXCMP-2023"  # RFC 9810 Appendix F, the module the draft imports KEM types from
PKIX_MODULE = "PKIX1Explicit88"  # RFC 5280 Appendix A.1
CMS_MODULE = "CryptographicMessageSyntax2004"  # RFC 5652 section 12.1 (+ RFC 5083)
KEMRI_MODULE = "CMS-KEMRecipientInfo-2023"  # RFC 9629 section 8
PKCS10_MODULE = "PKCS-10"  # RFC 2986 Appendix A
HELPER_MODULE = "PQSCEP-TEST-HELPERS"  # RFC 5958, RFC 9883 and RFC 8894 attribute syntaxes


# --------------------------------------------------------------------------------------------
# the draft's blocks
# --------------------------------------------------------------------------------------------


def draft_text() -> str:
    return DRAFT.read_text(encoding="utf-8")


def asn1_blocks(text: str | None = None) -> list[str]:
    """The contents of every ``~~~ asn.1`` fenced block of the draft, in order (kramdown-rfc
    marks ASN.1 artwork with that language tag; a block may be indented inside a list)."""
    text = draft_text() if text is None else text
    blocks = []
    for match in re.finditer(r"^( *)~~~ *asn\.1 *\n(.*?)^\1~~~ *$", text, re.M | re.S):
        indent = len(match.group(1))
        blocks.append("".join(line[indent:] for line in match.group(2).splitlines(keepends=True)))
    return blocks


def module_block(blocks: list[str] | None = None) -> str:
    """The block holding the module (the only one with DEFINITIONS ... BEGIN ... END)."""
    blocks = asn1_blocks() if blocks is None else blocks
    modules = [b for b in blocks if re.search(r"\bDEFINITIONS\b.*?::=\s*BEGIN\b", b, re.S)]
    if len(modules) != 1:
        raise AssertionError(f"the draft has {len(modules)} ASN.1 modules, expected exactly one")
    return modules[0]


def reference_block(blocks: list[str] | None = None) -> str:
    """The block after the module that restates the types imported from RFC 9810."""
    blocks = asn1_blocks() if blocks is None else blocks
    after = blocks[blocks.index(module_block(blocks)) + 1:]
    refs = [b for b in after if re.search(r"^KemOtherInfo\s*::=", b, re.M)]
    if len(refs) != 1:
        raise AssertionError("the draft has no block restating RFC 9810's KemOtherInfo after its module")
    return refs[0]


def fragment_blocks(blocks: list[str] | None = None) -> list[str]:
    """The ``asn.1`` blocks of the body that quote parts of the module (all but module and reference)."""
    blocks = asn1_blocks() if blocks is None else blocks
    keep = {id(module_block(blocks)), id(reference_block(blocks))}
    return [b for b in blocks if id(b) not in keep]


def preprocess_module(module: str) -> str:
    """The draft's module as asn1tools can take it. One rewrite, and only when it applies:

    1. ``id-mod-pq-scep-2026(TBD-MOD)``: the module OID's last arc is the placeholder that the
       IANA section asks to be assigned. X.680 section 32.3 wants a number in NameAndNumberForm
       and asn1tools refuses anything else, so the placeholder becomes 0 here. The module OID is
       not encoded in any message, so this changes nothing that is tested.

    ``EXPORTS ALL;`` and the IMPORTS of PKIX1Explicit88 and PKIXCMP-2023 are kept as they are:
    asn1tools resolves them against the modules compiled with it (`pkix_module`,
    `reference_module`), so an imported name that those modules lack fails the compilation.
    """
    return module.replace("(TBD-MOD)", "(0)")


def _imported_module_header(module: str, name: str) -> str:
    """``NAME { oid }`` exactly as the draft's IMPORTS clause writes it after FROM."""
    match = re.search(r"\bFROM\s+(" + re.escape(name) + r"\s*\{[^}]*\})", module)
    if match is None:
        raise AssertionError(f"the draft's module does not import from {name}")
    return match.group(1)


def reference_module(module: str, reference: str) -> str:
    """The draft's restatement of RFC 9810's types, wrapped into the module it imports from.

    Rewrites (the types' bodies are the draft's text otherwise):

    1. Header and footer: ``PKIXCMP-2023 { oid } DEFINITIONS EXPLICIT TAGS ::= BEGIN ... END``,
       name and OID taken from the draft's own IMPORTS clause; EXPLICIT TAGS as RFC 9810
       Appendix F has it (and as the draft says just before the block). The block imports
       AlgorithmIdentifier from RFC 5280's module, as the RFC's module does (from the 2009 form
       of RFC 5912, whose AlgorithmIdentifier encodes the same).
    2. ``AlgorithmIdentifier{KEM-ALGORITHM, {...}}`` becomes ``AlgorithmIdentifier``: asn1tools
       has no information object classes or parameterized types. The parameters of RFC 5912
       only constrain which algorithms may appear (X.681/X.683); the encoding is RFC 5280's
       SEQUENCE { algorithm OBJECT IDENTIFIER, parameters ANY OPTIONAL }.
    """
    body = re.sub(r"AlgorithmIdentifier\s*\{\s*KEM-ALGORITHM\s*,\s*\{\s*\.\.\.\s*\}\s*\}",
                  "AlgorithmIdentifier", reference)
    return (f"{_imported_module_header(module, CMP_MODULE)}\n"
            "DEFINITIONS EXPLICIT TAGS ::=\nBEGIN\n"
            f"IMPORTS AlgorithmIdentifier FROM {_imported_module_header(module, PKIX_MODULE)};\n\n"
            f"{body}\nEND\n")


# --------------------------------------------------------------------------------------------
# the imported and surrounding definitions, from the RFCs
# --------------------------------------------------------------------------------------------


def pkix_module(module: str) -> str:
    """RFC 5280 types, under the module name and OID the draft imports them from."""
    return f"""
{_imported_module_header(module, PKIX_MODULE)}
DEFINITIONS EXPLICIT TAGS ::=
BEGIN

-- RFC 5280 section 4.1.1.2
AlgorithmIdentifier ::= SEQUENCE {{
    algorithm   OBJECT IDENTIFIER,
    parameters  ANY DEFINED BY algorithm OPTIONAL }}

-- RFC 5280 section 4.1 (SubjectPublicKeyInfo in 4.1.2.7)
SubjectPublicKeyInfo ::= SEQUENCE {{
    algorithm         AlgorithmIdentifier,
    subjectPublicKey  BIT STRING }}

-- RFC 5280 section 4.1.2.4
Name ::= CHOICE {{ rdnSequence RDNSequence }}
RDNSequence ::= SEQUENCE OF RelativeDistinguishedName
RelativeDistinguishedName ::= SET SIZE (1..MAX) OF AttributeTypeAndValue
AttributeTypeAndValue ::= SEQUENCE {{
    type   OBJECT IDENTIFIER,
    value  ANY DEFINED BY type }}

-- RFC 5280 section 4.1.2.2
CertificateSerialNumber ::= INTEGER

-- RFC 5280 section 4.1, shallow: tbsCertificate is kept whole (ANY), which is all a CMS
-- CertificateSet needs; its fields are not what this test is about.
Certificate ::= SEQUENCE {{
    tbsCertificate      ANY,
    signatureAlgorithm  AlgorithmIdentifier,
    signatureValue      BIT STRING }}

-- RFC 5280 section 5.1, shallow in the same way
CertificateList ::= SEQUENCE {{
    tbsCertList         ANY,
    signatureAlgorithm  AlgorithmIdentifier,
    signatureValue      BIT STRING }}

-- RFC 5280 section 4.2.1.2
SubjectKeyIdentifier ::= OCTET STRING

END
"""


def _imports_pkix(module: str, names: str) -> str:
    return f"IMPORTS {names}\n    FROM {_imported_module_header(module, PKIX_MODULE)}"


def cms_module(module: str) -> str:
    """RFC 5652 section 12.1 (IMPLICIT TAGS), with RFC 5083's AuthEnvelopedData added."""
    return f"""
{CMS_MODULE}
DEFINITIONS IMPLICIT TAGS ::=
BEGIN

{_imports_pkix(module, "AlgorithmIdentifier, Name, CertificateSerialNumber, Certificate, "
               "CertificateList, SubjectKeyIdentifier")};

-- RFC 5652 section 3. "ANY DEFINED BY contentType" is written ANY: asn1tools 0.169 fails on an
-- EXPLICIT tag around ANY DEFINED BY (TypeError), and the two encode the same.
ContentInfo ::= SEQUENCE {{
    contentType  ContentType,
    content      [0] EXPLICIT ANY }}
ContentType ::= OBJECT IDENTIFIER

-- RFC 5652 section 5.1
SignedData ::= SEQUENCE {{
    version           CMSVersion,
    digestAlgorithms  DigestAlgorithmIdentifiers,
    encapContentInfo  EncapsulatedContentInfo,
    certificates      [0] IMPLICIT CertificateSet OPTIONAL,
    crls              [1] IMPLICIT RevocationInfoChoices OPTIONAL,
    signerInfos       SignerInfos }}
DigestAlgorithmIdentifiers ::= SET OF DigestAlgorithmIdentifier
SignerInfos ::= SET OF SignerInfo

-- RFC 5652 section 5.2
EncapsulatedContentInfo ::= SEQUENCE {{
    eContentType  ContentType,
    eContent      [0] EXPLICIT OCTET STRING OPTIONAL }}

-- RFC 5652 section 5.3
SignerInfo ::= SEQUENCE {{
    version             CMSVersion,
    sid                 SignerIdentifier,
    digestAlgorithm     DigestAlgorithmIdentifier,
    signedAttrs         [0] IMPLICIT SignedAttributes OPTIONAL,
    signatureAlgorithm  SignatureAlgorithmIdentifier,
    signature           SignatureValue,
    unsignedAttrs       [1] IMPLICIT UnsignedAttributes OPTIONAL }}
SignerIdentifier ::= CHOICE {{
    issuerAndSerialNumber  IssuerAndSerialNumber,
    subjectKeyIdentifier   [0] SubjectKeyIdentifier }}
SignedAttributes ::= SET SIZE (1..MAX) OF Attribute
UnsignedAttributes ::= SET SIZE (1..MAX) OF Attribute
Attribute ::= SEQUENCE {{
    attrType    OBJECT IDENTIFIER,
    attrValues  SET OF AttributeValue }}
AttributeValue ::= ANY
SignatureValue ::= OCTET STRING

-- RFC 5652 section 6.1
EnvelopedData ::= SEQUENCE {{
    version               CMSVersion,
    originatorInfo        [0] IMPLICIT OriginatorInfo OPTIONAL,
    recipientInfos        RecipientInfos,
    encryptedContentInfo  EncryptedContentInfo,
    unprotectedAttrs      [1] IMPLICIT UnprotectedAttributes OPTIONAL }}
OriginatorInfo ::= SEQUENCE {{
    certs  [0] IMPLICIT CertificateSet OPTIONAL,
    crls   [1] IMPLICIT RevocationInfoChoices OPTIONAL }}
RecipientInfos ::= SET SIZE (1..MAX) OF RecipientInfo
EncryptedContentInfo ::= SEQUENCE {{
    contentType                 ContentType,
    contentEncryptionAlgorithm  ContentEncryptionAlgorithmIdentifier,
    encryptedContent            [0] IMPLICIT EncryptedContent OPTIONAL }}
EncryptedContent ::= OCTET STRING
UnprotectedAttributes ::= SET SIZE (1..MAX) OF Attribute

-- RFC 5652 section 6.2
RecipientInfo ::= CHOICE {{
    ktri   KeyTransRecipientInfo,
    kari   [1] KeyAgreeRecipientInfo,
    kekri  [2] KEKRecipientInfo,
    pwri   [3] PasswordRecipientInfo,
    ori    [4] OtherRecipientInfo }}
EncryptedKey ::= OCTET STRING

-- RFC 5652 section 6.2.1
KeyTransRecipientInfo ::= SEQUENCE {{
    version                 CMSVersion,
    rid                     RecipientIdentifier,
    keyEncryptionAlgorithm  KeyEncryptionAlgorithmIdentifier,
    encryptedKey            EncryptedKey }}
RecipientIdentifier ::= CHOICE {{
    issuerAndSerialNumber  IssuerAndSerialNumber,
    subjectKeyIdentifier   [0] SubjectKeyIdentifier }}

-- RFC 5652 section 6.2.2
KeyAgreeRecipientInfo ::= SEQUENCE {{
    version                 CMSVersion,
    originator              [0] EXPLICIT OriginatorIdentifierOrKey,
    ukm                     [1] EXPLICIT UserKeyingMaterial OPTIONAL,
    keyEncryptionAlgorithm  KeyEncryptionAlgorithmIdentifier,
    recipientEncryptedKeys  RecipientEncryptedKeys }}
OriginatorIdentifierOrKey ::= CHOICE {{
    issuerAndSerialNumber  IssuerAndSerialNumber,
    subjectKeyIdentifier   [0] SubjectKeyIdentifier,
    originatorKey          [1] OriginatorPublicKey }}
OriginatorPublicKey ::= SEQUENCE {{
    algorithm  AlgorithmIdentifier,
    publicKey  BIT STRING }}
RecipientEncryptedKeys ::= SEQUENCE OF RecipientEncryptedKey
RecipientEncryptedKey ::= SEQUENCE {{
    rid           KeyAgreeRecipientIdentifier,
    encryptedKey  EncryptedKey }}
KeyAgreeRecipientIdentifier ::= CHOICE {{
    issuerAndSerialNumber  IssuerAndSerialNumber,
    rKeyId                 [0] IMPLICIT RecipientKeyIdentifier }}
RecipientKeyIdentifier ::= SEQUENCE {{
    subjectKeyIdentifier  SubjectKeyIdentifier,
    date                  GeneralizedTime OPTIONAL,
    other                 OtherKeyAttribute OPTIONAL }}

-- RFC 5652 section 6.2.3
KEKRecipientInfo ::= SEQUENCE {{
    version                 CMSVersion,
    kekid                   KEKIdentifier,
    keyEncryptionAlgorithm  KeyEncryptionAlgorithmIdentifier,
    encryptedKey            EncryptedKey }}
KEKIdentifier ::= SEQUENCE {{
    keyIdentifier  OCTET STRING,
    date           GeneralizedTime OPTIONAL,
    other          OtherKeyAttribute OPTIONAL }}

-- RFC 5652 section 6.2.4 (from RFC 3211 section 2)
PasswordRecipientInfo ::= SEQUENCE {{
    version                 CMSVersion,
    keyDerivationAlgorithm  [0] KeyDerivationAlgorithmIdentifier OPTIONAL,
    keyEncryptionAlgorithm  KeyEncryptionAlgorithmIdentifier,
    encryptedKey            EncryptedKey }}

-- RFC 5652 section 6.2.5
OtherRecipientInfo ::= SEQUENCE {{
    oriType   OBJECT IDENTIFIER,
    oriValue  ANY DEFINED BY oriType }}

-- RFC 5652 section 10.1
DigestAlgorithmIdentifier ::= AlgorithmIdentifier
SignatureAlgorithmIdentifier ::= AlgorithmIdentifier
KeyEncryptionAlgorithmIdentifier ::= AlgorithmIdentifier
ContentEncryptionAlgorithmIdentifier ::= AlgorithmIdentifier
KeyDerivationAlgorithmIdentifier ::= AlgorithmIdentifier

-- RFC 5652 section 10.2: CertificateChoices without its obsolete alternatives
-- (extendedCertificate [0], v1AttrCert [1]) and attribute certificates [2], which SCEP never
-- carries; RevocationInfoChoice likewise.
RevocationInfoChoices ::= SET OF RevocationInfoChoice
RevocationInfoChoice ::= CHOICE {{
    crl    CertificateList,
    other  [1] IMPLICIT OtherRevocationInfoFormat }}
OtherRevocationInfoFormat ::= SEQUENCE {{
    otherRevInfoFormat  OBJECT IDENTIFIER,
    otherRevInfo        ANY DEFINED BY otherRevInfoFormat }}
CertificateChoices ::= CHOICE {{
    certificate  Certificate,
    other        [3] IMPLICIT OtherCertificateFormat }}
OtherCertificateFormat ::= SEQUENCE {{
    otherCertFormat  OBJECT IDENTIFIER,
    otherCert        ANY DEFINED BY otherCertFormat }}
CertificateSet ::= SET OF CertificateChoices
IssuerAndSerialNumber ::= SEQUENCE {{
    issuer        Name,
    serialNumber  CertificateSerialNumber }}
CMSVersion ::= INTEGER {{ v0(0), v1(1), v2(2), v3(3), v4(4), v5(5) }}
UserKeyingMaterial ::= OCTET STRING
OtherKeyAttribute ::= SEQUENCE {{
    keyAttrId  OBJECT IDENTIFIER,
    keyAttr    ANY DEFINED BY keyAttrId OPTIONAL }}

-- RFC 5083 section 2.1 (its module, CMS-AuthEnvelopedData-2007, has IMPLICIT TAGS too)
AuthEnvelopedData ::= SEQUENCE {{
    version                   CMSVersion,
    originatorInfo            [0] IMPLICIT OriginatorInfo OPTIONAL,
    recipientInfos            RecipientInfos,
    authEncryptedContentInfo  EncryptedContentInfo,
    authAttrs                 [1] IMPLICIT AuthAttributes OPTIONAL,
    mac                       MessageAuthenticationCode,
    unauthAttrs               [2] IMPLICIT UnauthAttributes OPTIONAL }}
AuthAttributes ::= SET SIZE (1..MAX) OF Attribute
UnauthAttributes ::= SET SIZE (1..MAX) OF Attribute
MessageAuthenticationCode ::= OCTET STRING

END
"""


KEMRI_TEXT = f"""
{KEMRI_MODULE}
DEFINITIONS IMPLICIT TAGS ::=
BEGIN

IMPORTS CMSVersion, RecipientIdentifier, EncryptedKey, UserKeyingMaterial,
        KeyDerivationAlgorithmIdentifier, KeyEncryptionAlgorithmIdentifier
    FROM {CMS_MODULE};

-- RFC 9629 section 3 (KEMAlgorithmIdentifier is AlgorithmIdentifier{{KEM-ALGORITHM, ...}}:
-- the same encoding, see `reference_module`)
KEMRecipientInfo ::= SEQUENCE {{
    version       CMSVersion,
    rid           RecipientIdentifier,
    kem           KEMAlgorithmIdentifier,
    kemct         OCTET STRING,
    kdf           KeyDerivationAlgorithmIdentifier,
    kekLength     INTEGER (1..65535),
    ukm           [0] EXPLICIT UserKeyingMaterial OPTIONAL,
    wrap          KeyEncryptionAlgorithmIdentifier,
    encryptedKey  EncryptedKey }}
KEMAlgorithmIdentifier ::= KeyDerivationAlgorithmIdentifier

-- RFC 9629 section 5
CMSORIforKEMOtherInfo ::= SEQUENCE {{
    wrap       KeyEncryptionAlgorithmIdentifier,
    kekLength  INTEGER (1..65535),
    ukm        [0] EXPLICIT UserKeyingMaterial OPTIONAL }}

END
"""


def pkcs10_module(module: str) -> str:
    """RFC 2986 Appendix A (IMPLICIT TAGS), its information object sets left out as in
    `reference_module`: they constrain values, not the encoding."""
    return f"""
{PKCS10_MODULE}
DEFINITIONS IMPLICIT TAGS ::=
BEGIN

{_imports_pkix(module, "AlgorithmIdentifier, SubjectPublicKeyInfo, Name")}
        Attribute FROM {CMS_MODULE};

-- RFC 2986 section 4.1 (Attribute: type and SET SIZE (1..MAX) OF values, as RFC 5652's)
CertificationRequestInfo ::= SEQUENCE {{
    version        INTEGER {{ v1(0) }},
    subject        Name,
    subjectPKInfo  SubjectPublicKeyInfo,
    attributes     [0] Attributes }}
Attributes ::= SET OF Attribute

-- RFC 2986 section 4.2
CertificationRequest ::= SEQUENCE {{
    certificationRequestInfo  CertificationRequestInfo,
    signatureAlgorithm        AlgorithmIdentifier,
    signature                 BIT STRING }}

END
"""


def helper_module(module: str) -> str:
    return f"""
{HELPER_MODULE}
DEFINITIONS IMPLICIT TAGS ::=
BEGIN

{_imports_pkix(module, "AlgorithmIdentifier, Certificate")}
        IssuerAndSerialNumber, Attribute FROM {CMS_MODULE};

-- RFC 9883 section 3 / its module (EXPLICIT TAGS there; no tags in this type)
PrivateKeyPossessionStatement ::= SEQUENCE {{
    signer  IssuerAndSerialNumber,
    cert    Certificate OPTIONAL }}

-- RFC 5958 section 2 (IMPLICIT TAGS). The extension marker and the version bracket around
-- publicKey are left out: they do not change the DER of a value.
OneAsymmetricKey ::= SEQUENCE {{
    version              INTEGER {{ v1(0), v2(1) }},
    privateKeyAlgorithm  AlgorithmIdentifier,
    privateKey           OCTET STRING,
    attributes           [0] SET OF Attribute OPTIONAL,
    publicKey            [1] BIT STRING OPTIONAL }}
PrivateKeyInfo ::= OneAsymmetricKey

-- RFC 8894 section 3.2.1: the SCEP signed attribute syntaxes
MessageType ::= PrintableString
PkiStatus ::= PrintableString
TransactionID ::= PrintableString
Nonce ::= OCTET STRING  -- senderNonce and recipientNonce, 16 octets

END
"""


@functools.cache
def sources() -> tuple[tuple[str, str], ...]:
    """(name, ASN.1 text) of every module compiled together, the draft's first."""
    blocks = asn1_blocks()
    module = module_block(blocks)
    return (
        (DRAFT_MODULE, preprocess_module(module)),
        (CMP_MODULE, reference_module(module, reference_block(blocks))),
        (PKIX_MODULE, pkix_module(module)),
        (CMS_MODULE, cms_module(module)),
        (KEMRI_MODULE, KEMRI_TEXT),
        (PKCS10_MODULE, pkcs10_module(module)),
        (HELPER_MODULE, helper_module(module)),
    )


@functools.cache
def compiled() -> asn1tools.compiler.Specification:
    """Every module above compiled with asn1tools' DER codec."""
    return asn1tools.compile_string("\n".join(text for _, text in sources()), "der")


@functools.cache
def parsed() -> dict:
    """asn1tools' parse tree of the same modules (for value assignments such as the OIDs)."""
    return asn1tools.parse_string("\n".join(text for _, text in sources()))


def asn1_type(module: str, name: str):
    """A compiled type, looked up in the module that defines it (never by a bare name, which
    could come from another module)."""
    return compiled().modules[module][name]


def draft_type(name: str):
    return asn1_type(DRAFT_MODULE, name)


def oid_value(module: str, name: str) -> str:
    """The dotted form of an OBJECT IDENTIFIER value assignment of `module`, resolving names of
    earlier values (``{ id-scep 2 }``)."""
    values = parsed()[module]["values"]
    arcs: list[int] = []
    for component in values[name]["value"]:
        if isinstance(component, tuple):  # NameAndNumberForm: ('iso', 1)
            arcs.append(int(component[1]))
        elif isinstance(component, int) or str(component).isdigit():
            arcs.append(int(component))
        elif component in values:  # a defined value as the first component
            arcs.extend(int(a) for a in oid_value(module, component).split("."))
        else:
            raise AssertionError(f"{name}: cannot resolve {component!r}")
    return ".".join(map(str, arcs))


# The types the draft's attributes carry, by attribute OID name (draft section "New Attributes")
ATTRIBUTE_TYPES = {
    "id-scep-kemPopChallenge": "KemPopChallenge",
    "id-scep-kemPopProof": "KemPopProof",
    "id-scep-responseKey": "ResponseKey",
}


def attribute_types() -> dict[str, str]:
    """{dotted OID: draft type name} for the three attributes, the OIDs from the draft's module."""
    return {oid_value(DRAFT_MODULE, name): type_name for name, type_name in ATTRIBUTE_TYPES.items()}


def der_round_trip(type_, der: bytes):
    """Decode `der` with the compiled type, check the type's constraints, and check that
    re-encoding gives the same bytes. asn1tools can only do that when the definition has the
    encoding's tags (and their EXPLICIT/IMPLICIT form), fields, order and types: a field the
    definition lacks, a required one the bytes omit, or a non-DER length fails. (A present
    OPTIONAL field round-trips either way: optionality shows only when a field is absent.)
    Returns the decoded value; AssertionError names the type when the bytes differ."""
    value = type_.decode(bytes(der))
    type_.check_constraints(value)  # SIZE and value ranges (e.g. kekLength 1..65535)
    type_.check_types(value)
    again = type_.encode(value)
    assert again == der, f"{type_.name}: DER re-encoding differs ({len(again)} vs {len(der)} bytes)"
    return value


# --------------------------------------------------------------------------------------------
# walking whole messages
# --------------------------------------------------------------------------------------------

ID_DATA = "1.2.840.113549.1.7.1"  # RFC 5652 section 4
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"  # RFC 5652 section 5.1
ID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"  # RFC 5652 section 6.1
ID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"  # RFC 5083 section 2.1
ID_ORI_KEM = "1.2.840.113549.1.9.16.13.3"  # RFC 9629 section 3


class Walk:
    """What `walk_content_info` found, every part decoded by asn1tools and DER round-tripped."""

    def __init__(self):
        self.content_types: list[str] = []
        self.signed_data: list[dict] = []
        # (attribute OID, draft type name, decoded value, value DER) for id-scep 2, 3 and 4
        self.scep_attributes: list[tuple[str, str, dict, bytes]] = []
        self.signed_attributes: list[dict] = []  # every signed attribute, as asn1tools decoded it
        self.envelopes: list[tuple[str, dict]] = []  # (content type, EnvelopedData/AuthEnvelopedData)
        self.kem_recipient_infos: list[dict] = []  # decoded KEMRecipientInfo
        self.kem_recipient_info_ders: list[bytes] = []
        self.other_recipient_infos: list[str] = []  # oriType of each ori

    def attribute(self, oid: str) -> list[dict]:
        return [value for attr_oid, _, value, _ in self.scep_attributes if attr_oid == oid]


def check_set_of_order(element_type, elements: list, what: str) -> None:
    """X.690 section 11.6: the elements of a DER SET OF are in ascending order of their encodings
    (asn1tools keeps the order it decoded, so its re-encoding alone cannot show this)."""
    encoded = [element_type.encode(e) for e in elements]
    assert encoded == sorted(encoded), f"{what}: the SET OF is not in DER order (X.690 11.6)"


def _starts_like_content_info(der: bytes) -> bool:
    """A SEQUENCE whose first element is one of the three content types walked here. (A SCEP
    eContent is the pkcsPKIEnvelope; anything else, such as another structure, is left alone, but
    something that starts like a ContentInfo must then decode as one.)"""
    oid = asn1_type(CMS_MODULE, "ContentType")
    wanted = [bytes(oid.encode(o)) for o in (ID_SIGNED_DATA, ID_ENVELOPED_DATA, ID_AUTH_ENVELOPED_DATA)]
    if der[:1] != b"\x30" or len(der) < 2:
        return False
    header = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    return any(der[header:header + len(w)] == w for w in wanted)


def walk_content_info(der: bytes, walk: Walk | None = None) -> Walk:
    """Decode a ContentInfo and everything the draft touches inside it:

    * SignedData (RFC 5652 section 5): for each SignerInfo, the signed attributes; the values of
      id-scep-kemPopChallenge, id-scep-kemPopProof and id-scep-responseKey (OIDs read from the
      draft's module) are decoded with the draft's KemPopChallenge, KemPopProof and ResponseKey.
      An eContent that is itself a ContentInfo (SCEP's pkcsPKIEnvelope, RFC 8894 section 3.2.2)
      is walked too.
    * EnvelopedData (RFC 5652 section 6) and AuthEnvelopedData (RFC 5083): each RecipientInfo;
      an ori [4] of type id-ori-kem has its oriValue decoded as RFC 9629's KEMRecipientInfo.

    Every decode is followed by an encode that must give back the same bytes."""
    walk = walk if walk is not None else Walk()
    info = der_round_trip(asn1_type(CMS_MODULE, "ContentInfo"), der)
    content_type = info["contentType"]
    walk.content_types.append(content_type)
    if content_type == ID_SIGNED_DATA:
        signed = der_round_trip(asn1_type(CMS_MODULE, "SignedData"), info["content"])
        walk.signed_data.append(signed)
        scep_types = attribute_types()
        for signer in signed["signerInfos"]:
            attrs = signer.get("signedAttrs", [])
            check_set_of_order(asn1_type(CMS_MODULE, "Attribute"), attrs, "signedAttrs")
            for attr in attrs:
                walk.signed_attributes.append(attr)
                type_name = scep_types.get(attr["attrType"])
                if type_name is None:
                    continue
                for value_der in attr["attrValues"]:
                    value = der_round_trip(draft_type(type_name), bytes(value_der))
                    walk.scep_attributes.append((attr["attrType"], type_name, value, bytes(value_der)))
        econtent = signed["encapContentInfo"].get("eContent")
        if econtent and _starts_like_content_info(econtent):
            walk_content_info(bytes(econtent), walk)
    elif content_type in (ID_ENVELOPED_DATA, ID_AUTH_ENVELOPED_DATA):
        name = "EnvelopedData" if content_type == ID_ENVELOPED_DATA else "AuthEnvelopedData"
        envelope = der_round_trip(asn1_type(CMS_MODULE, name), info["content"])
        walk.envelopes.append((content_type, envelope))
        for choice, recipient in envelope["recipientInfos"]:
            if choice != "ori":
                continue
            walk.other_recipient_infos.append(recipient["oriType"])
            if recipient["oriType"] == ID_ORI_KEM:
                kemri_der = bytes(recipient["oriValue"])
                walk.kem_recipient_infos.append(
                    der_round_trip(asn1_type(KEMRI_MODULE, "KEMRecipientInfo"), kemri_der))
                walk.kem_recipient_info_ders.append(kemri_der)
    return walk
