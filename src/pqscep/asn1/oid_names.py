"""The names of the object identifiers: one row per OID of `oids`, plus the X.500 and X.509 ones
the annotated test vectors show. Everything that prints an OID's name or looks an algorithm up
by name reads it here.

A row holds the names its readers need, which are not the same string:

- `name`, the project's own: the algorithm registries (`pqscep.crypto.registry`,
  `pqscep.crypto.signing`) look algorithms up by it, so configuration, the CLI and error messages
  spell it ("sha256", "aes256-cbc", "hkdf-sha256", "ML-DSA-65", "sha256WithRSAEncryption"), and
  `pqscep inspect` shows it wherever an OID stands for an algorithm or a content type (a key
  algorithm it shows by its FIPS 203/204 parameter set, "ML-KEM-768", when it has one). For the
  OIDs of `oids` that are neither algorithms nor content types it is the lower-case,
  dash-separated form of the constant's name ("content-type", "scep-message-type"). None: the
  project has no name of its own, the dotted form is shown.
- `asn1`, the value name of the ASN.1 modules, as the RFCs spell it ("id-aes256-CBC",
  "id-alg-hkdf-with-sha256", "id-ct-authEnvelopedData"; the digests as "sha256"): the
  annotated DER listings of the test vectors name every OID this way.
- `attribute`, for the types of CMS attributes (RFC 5652 section 11, RFC 6211, RFC 8894
  section 3.2.1 and the post-quantum SCEP ones): the attribute's name, as `pqscep inspect` lists
  signed and unprotected attributes ("contentType", "messageType", "kemPopChallenge").

This module knows names only; what an algorithm does is in `pqscep.crypto`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurveOID
from cryptography.x509 import ObjectIdentifier
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from . import oids

__all__ = ["OID_NAMES", "OidName", "asn1_name", "attribute_name", "oid_name"]


@dataclass(frozen=True)
class OidName:
    """The names of one OID (see the module docstring for who reads which)."""

    name: str | None
    asn1: str
    attribute: str | None = None


OID_NAMES: dict[ObjectIdentifier, OidName] = {
    # --- CMS content types (RFC 5652 section 14, RFC 5083) ---
    oids.DATA: OidName("data", "data"),
    oids.SIGNED_DATA: OidName("signedData", "signedData"),
    oids.ENVELOPED_DATA: OidName("envelopedData", "envelopedData"),
    oids.AUTH_ENVELOPED_DATA: OidName("authEnvelopedData", "id-ct-authEnvelopedData"),
    # --- CMS attributes (RFC 5652 section 11, RFC 6211) ---
    oids.CONTENT_TYPE: OidName("content-type", "contentType", "contentType"),
    oids.MESSAGE_DIGEST: OidName("message-digest", "messageDigest", "messageDigest"),
    oids.SIGNING_TIME: OidName("signing-time", "signingTime", "signingTime"),
    oids.CMS_ALGORITHM_PROTECTION: OidName(
        "cms-algorithm-protection", "id-aa-CMSAlgorithmProtection", "cmsAlgorithmProtection"
    ),
    # --- PKCS #9 attributes carried in a PKCS #10 request ---
    oids.CHALLENGE_PASSWORD: OidName("challenge-password", "challengePassword"),
    oids.EXTENSION_REQUEST: OidName("extension-request", "extensionRequest"),
    # --- SCEP attributes (RFC 8894 section 3.2.1) ---
    oids.SCEP_MESSAGE_TYPE: OidName("scep-message-type", "messageType", "messageType"),
    oids.SCEP_PKI_STATUS: OidName("scep-pki-status", "pkiStatus", "pkiStatus"),
    oids.SCEP_FAIL_INFO: OidName("scep-fail-info", "failInfo", "failInfo"),
    oids.SCEP_SENDER_NONCE: OidName("scep-sender-nonce", "senderNonce", "senderNonce"),
    oids.SCEP_RECIPIENT_NONCE: OidName("scep-recipient-nonce", "recipientNonce", "recipientNonce"),
    oids.SCEP_TRANSACTION_ID: OidName("scep-transaction-id", "transactionID", "transactionID"),
    oids.MS_UPN: OidName(None, "id-ms-upn"),
    oids.SCEP_FAIL_INFO_TEXT: OidName("scep-fail-info-text", "id-scep-failInfoText", "failInfoText"),
    oids.SCEP_KEM_POP_CHALLENGE: OidName("scep-kem-pop-challenge", "id-scep-kemPopChallenge", "kemPopChallenge"),
    oids.SCEP_KEM_POP_PROOF: OidName("scep-kem-pop-proof", "id-scep-kemPopProof", "kemPopProof"),
    oids.SCEP_RESPONSE_KEY: OidName("scep-response-key", "id-scep-responseKey", "responseKey"),
    # --- digests ---
    oids.MD5: OidName("md5", "md5"),
    oids.SHA1: OidName("sha1", "sha1"),
    oids.SHA224: OidName("sha224", "sha224"),
    oids.SHA256: OidName("sha256", "sha256"),
    oids.SHA384: OidName("sha384", "sha384"),
    oids.SHA512: OidName("sha512", "sha512"),
    # --- signatures and public keys (RFC 8017, RFC 4055, RFC 3279, RFC 5480, RFC 5758, RFC 9881) ---
    oids.RSA_ENCRYPTION: OidName("rsaEncryption", "rsaEncryption"),
    oids.MD5_WITH_RSA: OidName("md5WithRSAEncryption", "md5WithRSAEncryption"),
    oids.SHA1_WITH_RSA: OidName("sha1WithRSAEncryption", "sha1WithRSAEncryption"),
    oids.SHA256_WITH_RSA: OidName("sha256WithRSAEncryption", "sha256WithRSAEncryption"),
    oids.SHA384_WITH_RSA: OidName("sha384WithRSAEncryption", "sha384WithRSAEncryption"),
    oids.SHA512_WITH_RSA: OidName("sha512WithRSAEncryption", "sha512WithRSAEncryption"),
    oids.SHA224_WITH_RSA: OidName("sha224WithRSAEncryption", "sha224WithRSAEncryption"),
    oids.RSAES_OAEP: OidName("RSAES-OAEP", "id-RSAES-OAEP"),
    oids.MGF1: OidName("mgf1", "id-mgf1"),
    oids.EC_PUBLIC_KEY: OidName("ecPublicKey", "id-ecPublicKey"),
    oids.ECDSA_WITH_SHA1: OidName("ecdsa-with-SHA1", "ecdsa-with-SHA1"),
    oids.ECDSA_WITH_SHA224: OidName("ecdsa-with-SHA224", "ecdsa-with-SHA224"),
    oids.ECDSA_WITH_SHA256: OidName("ecdsa-with-SHA256", "ecdsa-with-SHA256"),
    oids.ECDSA_WITH_SHA384: OidName("ecdsa-with-SHA384", "ecdsa-with-SHA384"),
    oids.ECDSA_WITH_SHA512: OidName("ecdsa-with-SHA512", "ecdsa-with-SHA512"),
    oids.ML_DSA_44: OidName("ML-DSA-44", "id-ml-dsa-44"),
    oids.ML_DSA_65: OidName("ML-DSA-65", "id-ml-dsa-65"),
    oids.ML_DSA_87: OidName("ML-DSA-87", "id-ml-dsa-87"),
    # --- KEMs (RFC 9935) ---
    oids.ML_KEM_512: OidName("ml-kem-512", "id-alg-ml-kem-512"),
    oids.ML_KEM_768: OidName("ml-kem-768", "id-alg-ml-kem-768"),
    oids.ML_KEM_1024: OidName("ml-kem-1024", "id-alg-ml-kem-1024"),
    # --- content encryption (RFC 8018, RFC 3370, RFC 3565, RFC 5084) ---
    oids.DES_CBC: OidName("des-cbc", "desCBC"),
    oids.DES_EDE3_CBC: OidName("des3-cbc", "des-ede3-cbc"),
    oids.AES128_CBC: OidName("aes128-cbc", "id-aes128-CBC"),
    oids.AES192_CBC: OidName("aes192-cbc", "id-aes192-CBC"),
    oids.AES256_CBC: OidName("aes256-cbc", "id-aes256-CBC"),
    oids.AES128_GCM: OidName("aes128-gcm", "id-aes128-GCM"),
    oids.AES192_GCM: OidName("aes192-gcm", "id-aes192-GCM"),
    oids.AES256_GCM: OidName("aes256-gcm", "id-aes256-GCM"),
    # --- key wrap and key derivation (RFC 3394, RFC 3211, RFC 8018, RFC 8619, RFC 9629) ---
    oids.AES128_WRAP: OidName("aes128-wrap", "id-aes128-wrap"),
    oids.AES192_WRAP: OidName("aes192-wrap", "id-aes192-wrap"),
    oids.AES256_WRAP: OidName("aes256-wrap", "id-aes256-wrap"),
    oids.PBKDF2: OidName("PBKDF2", "id-PBKDF2"),
    oids.PBES2: OidName(None, "id-PBES2"),
    oids.PWRI_KEK: OidName("id-alg-PWRI-KEK", "id-alg-PWRI-KEK"),
    oids.HMAC_WITH_SHA1: OidName("hmac-sha1", "hmacWithSHA1"),
    oids.HMAC_WITH_SHA256: OidName("hmac-sha256", "hmacWithSHA256"),
    oids.HMAC_WITH_SHA384: OidName("hmac-sha384", "hmacWithSHA384"),
    oids.HMAC_WITH_SHA512: OidName("hmac-sha512", "hmacWithSHA512"),
    oids.HKDF_SHA256: OidName("hkdf-sha256", "id-alg-hkdf-with-sha256"),
    oids.HKDF_SHA384: OidName("hkdf-sha384", "id-alg-hkdf-with-sha384"),
    oids.HKDF_SHA512: OidName("hkdf-sha512", "id-alg-hkdf-with-sha512"),
    oids.ORI_KEM: OidName("id-ori-kem", "id-ori-kem"),
    # --- X.509 (RFC 5280, RFC 9883) ---
    oids.SUBJECT_KEY_IDENTIFIER: OidName("subject-key-identifier", "subjectKeyIdentifier"),
    oids.PRIVATE_KEY_POSSESSION_STATEMENT: OidName("private-key-possession-statement", "id-at-statementOfPossession"),
    # X.500 attribute types, extensions, key purposes and curves, by cryptography's constants:
    # what the vectors' certificates and requests hold (RFC 5280; the curve as ANSI X9.62 names it).
    NameOID.COMMON_NAME: OidName(None, "commonName"),
    NameOID.ORGANIZATION_NAME: OidName(None, "organizationName"),
    ExtensionOID.KEY_USAGE: OidName(None, "keyUsage"),
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME: OidName(None, "subjectAltName"),
    ExtensionOID.BASIC_CONSTRAINTS: OidName(None, "basicConstraints"),
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER: OidName(None, "authorityKeyIdentifier"),
    ExtensionOID.EXTENDED_KEY_USAGE: OidName(None, "extKeyUsage"),
    ExtendedKeyUsageOID.CLIENT_AUTH: OidName(None, "id-kp-clientAuth"),
    EllipticCurveOID.SECP256R1: OidName(None, "prime256v1"),
}


def oid_name(oid: ObjectIdentifier) -> str:
    """The project's name of an OID (an algorithm's registry name), else its dotted form."""
    row = OID_NAMES.get(oid)
    return row.name if row is not None and row.name is not None else oid.dotted_string


def asn1_name(oid: ObjectIdentifier) -> str | None:
    """The ASN.1 value name of an OID ("id-aes256-CBC"), None for an OID not in the table."""
    row = OID_NAMES.get(oid)
    return row.asn1 if row is not None else None


def attribute_name(oid: ObjectIdentifier) -> str:
    """The name of a CMS attribute type ("contentType", "kemPopChallenge"); KeyError for an OID
    that is not one."""
    name = OID_NAMES[oid].attribute
    if name is None:
        raise KeyError(f"{oid.dotted_string} is not a CMS attribute type")
    return name
