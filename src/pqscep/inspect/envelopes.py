"""EnvelopedData (RFC 5652 section 6) and AuthEnvelopedData (RFC 5083) as nodes, and their
decryption with the given private keys and passwords.

`RECIPIENT_FACTORIES` maps a key family to the `cms.enveloped` recipients that decrypt with
such a key (RSA: KeyTransRecipient; ML-KEM: the RFC 9629 KEM recipient); a password opens
PasswordRecipientInfos (RFC 3211). What an envelope opens to is inspected in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.asn1 import TLV, SetOf

from ..asn1 import ber, cms
from ..cms import enveloped
from ..cms.kem import KemRecipient
from ..cms.password import PasswordRecipient
from ..crypto import keys as keymod
from .attributes import attribute_set_nodes
from .keys import KeyEntry
from .names import algorithm_node, oid_name
from .recipient_infos import RECIPIENT_INFOS

if TYPE_CHECKING:
    from .inspector import Inspector

__all__ = ["RECIPIENT_FACTORIES", "auth_enveloped_data", "enveloped_data", "recipient_info"]


class _OneKtri:
    """A KeyTransRecipient that answers for exactly one KeyTransRecipientInfo (by its encoding).

    With a bare key (no certificate), `KeyTransRecipient` matches every KTRI and the first one
    wins. With OpenSSL's implicit rejection, RSA PKCS#1 v1.5 decryption with the wrong key
    returns random bytes instead of failing, so the first KTRI addressed to someone else would
    yield a wrong key. Trying each (key, KTRI) pair on its own avoids that.
    """

    tag = cms.KTRI_TAG
    kind = "ktri"

    def __init__(self, key: Any, info_der: bytes):
        self._inner = enveloped.KeyTransRecipient(None, key)
        self._info_der = info_der

    def matches(self, info_der: bytes) -> bool:
        return info_der == self._info_der

    def unwrap(self, info_der: bytes, *, allow_legacy: bool) -> bytes:
        return self._inner.unwrap(info_der, allow_legacy=allow_legacy)


def _rsa_recipients(entry: KeyEntry, infos: list[bytes]) -> list[Any]:
    if entry.certificate is not None:
        return [enveloped.KeyTransRecipient(entry.certificate, entry.key)]
    return [_OneKtri(entry.key, info) for info in infos if info[0] == cms.KTRI_TAG]


def _kem_recipients(entry: KeyEntry, infos: list[bytes]) -> list[Any]:
    # With a certificate, only KEMRecipientInfos naming it; without, any of this KEM's (the
    # responseKey of a request is named by an SKI no certificate carries).
    return [KemRecipient(entry.key, certificate=entry.certificate)]


# key family -> recipients to try for one key, given the RecipientInfos (DER) of the envelope.
RECIPIENT_FACTORIES: dict[str, Callable[[KeyEntry, list[bytes]], list[Any]]] = {
    keymod.KeyFamily.RSA: _rsa_recipients,
    keymod.KeyFamily.ML_KEM: _kem_recipients,
}


def enveloped_data(inspector: Inspector, data: bytes, depth: int) -> dict[str, Any]:
    content_info = cms.decode(cms.ContentInfo, data)
    env = cms.decode_der(cms.EnvelopedData, cms.tlv_bytes(content_info.content))
    node = _envelope_common(inspector, "EnvelopedData", env, env.encrypted_content_info)
    if env.unprotected_attrs is not None:
        node["unprotected_attributes"] = attribute_set_nodes(env.unprotected_attrs)
    node["decryption"] = _decrypt(inspector, data, env.recipient_infos, depth)
    return node


def auth_enveloped_data(inspector: Inspector, data: bytes, depth: int) -> dict[str, Any]:
    content_info = cms.decode(cms.ContentInfo, data)
    env = cms.decode_der(cms.AuthEnvelopedData, cms.tlv_bytes(content_info.content))
    node = _envelope_common(inspector, "AuthEnvelopedData", env, env.auth_encrypted_content_info)
    node["mac_length"] = len(env.mac)
    if env.auth_attrs is not None:
        node["auth_attributes"] = attribute_set_nodes(env.auth_attrs)
    if env.unauth_attrs is not None:
        node["unauth_attributes"] = attribute_set_nodes(env.unauth_attrs)
    node["decryption"] = _decrypt(inspector, data, env.recipient_infos, depth)
    return node


def _envelope_common(inspector: Inspector, kind: str, env: Any, eci: cms.EncryptedContentInfo) -> dict[str, Any]:
    try:
        ciphertext_length = len(ber.join_constructed_string(cms.tlv_bytes(eci.encrypted_content)))
    except ber.BerError:
        ciphertext_length = None
    return {
        "type": kind,
        "version": env.version,
        "originator_info": "present" if env.originator_info is not None else "absent",
        "recipient_infos": [recipient_info(inspector, cms.tlv_bytes(i)) for i in env.recipient_infos.as_list()],
        "content_type": oid_name(eci.content_type),
        "content_encryption": algorithm_node(eci.content_encryption_algorithm),
        "encrypted_content_length": ciphertext_length,
    }


def recipient_info(inspector: Inspector, der: bytes) -> dict[str, Any]:
    """A RecipientInfo (DER) as a node, by its CHOICE tag (`RECIPIENT_INFOS`)."""
    handler = RECIPIENT_INFOS.get(der[0])
    if handler is None:
        return {"type": f"unknown RecipientInfo (tag {der[0]:#04x})"}
    try:
        return handler(inspector, der)
    except (cms.Asn1Error, ValueError) as exc:
        return {"type": f"RecipientInfo (tag {der[0]:#04x})", "error": str(exc)[:160]}


def _decrypt(inspector: Inspector, data: bytes, infos: SetOf[TLV], depth: int) -> dict[str, Any] | str:
    info_ders = [cms.tlv_bytes(i) for i in infos.as_list()]
    has_pwri = any(info[0] == cms.PWRI_TAG for info in info_ders)
    if not inspector.keys and not inspector.passwords:
        return "not attempted (give --key or --password)" if has_pwri else "not attempted (give --key)"
    errors = []
    # (label for errors, "with" text, recipient): every key's recipients, then the password.
    candidates: list[tuple[str, str, Any]] = []
    for entry in inspector.keys:
        try:
            family: str = keymod.key_family(entry.key)
        except ValueError:
            family = type(entry.key).__name__
        factory = RECIPIENT_FACTORIES.get(family)
        if factory is None:
            errors.append(f"{entry.label}: a {family} key cannot open any RecipientInfo yet")
            continue
        shown = entry.label + (f" + certificate {entry.certificate.subject.rfc4514_string()}"
                               if entry.certificate is not None else "")
        candidates.extend((entry.label, shown, recipient) for recipient in factory(entry, info_ders))
    for number, password in enumerate(inspector.passwords, 1):
        # The password itself is never shown: only which option it came from.
        label = "--password" if len(inspector.passwords) == 1 else f"--password #{number}"
        if not has_pwri:
            errors.append(f"{label}: the envelope has no PasswordRecipientInfo")
            continue
        candidates.append((label, label, PasswordRecipient(password)))
    for label, shown, recipient in candidates:
        try:
            opened = enveloped.open_envelope(data, [recipient], allow_legacy=True)
        except (enveloped.EnvelopeError, cms.Asn1Error, ValueError) as exc:
            errors.append(f"{label}: {exc}")
            continue
        inspector.innermost = opened.content
        return {
            "decrypted": True,
            "with": shown,
            "recipient_info": opened.recipient_kind,
            "cipher": opened.cipher.name + (" (legacy)" if opened.cipher.legacy else ""),
            "content_length": len(opened.content),
            "content": inspector.payload(opened.content, depth + 1),
        }
    if not candidates and not errors:
        errors.append("no RecipientInfo the given keys can open")
    reason = "; ".join(dict.fromkeys(errors))[:400] or "no matching RecipientInfo"
    inspector.problem(f"decryption failed: {reason}")
    return {"decrypted": False, "error": reason}
