"""README.md of the vectors folder, written by the generator so that it always names the keys,
seeds and times the files were made with."""

from __future__ import annotations

from . import material as mat

__all__ = ["readme"]

_TEXT = """\
# pqscep test vectors

Example messages of the post-quantum SCEP update (docs/draft/draft-pqscep-scep-pq-update.md,
section "Examples"), made by pqscep itself. **Every key here is a public test key.**

Regenerate (the output is byte for byte what is committed; tests/test_vectors_cmd.py checks it):

    pqscep vectors --out docs/vectors

## Layout

Each flow is a folder; its files are numbered in the order of the exchange:

| folder | what |
| --- | --- |
| `pq-enrollment/` | GetCACaps, GetCACert (ML-DSA-65 CA, ML-KEM-768 recipient certificate), a PKCSReq from an ML-DSA-65 requester with a responseKey, once as EnvelopedData/AES-256-CBC and once as AuthEnvelopedData/AES-256-GCM, and the CertRep SUCCESS to each, encrypted to the responseKey |
| `kem-pop-challenge/` | enrolment of an ML-KEM-768 key, challenge-response proof of possession: CSR signed by the signer with its RFC 9883 statement, PKCSReq, CertRep PENDING with kemPopChallenge, KemOtherInfo, kemPopProof, CertPoll, CertRep SUCCESS encrypted to the new key |
| `kem-pop-encrypted-cert/` | the same key type, encrypted-certificate mode: PKCSReq, then CertRep SUCCESS encrypted to the new key |
| `kem-pop-statement/` | statement mode: the device's ML-DSA-65 identity certificate from the CA signs the CSR and the PKCSReq; CertRep SUCCESS encrypted to the new key |
| `password-recipient/` | an ECDSA P-256 requester, PasswordRecipientInfo (PBKDF2-HMAC-SHA256, id-alg-PWRI-KEK with AES-256-CBC) both ways |
| `keys/` | every private key (PKCS #8 DER, seed form for ML-DSA and ML-KEM) and public key (SubjectPublicKeyInfo DER) |

For every `NN-name.der` there is `NN-name.txt`: an `openssl asn1parse`-like listing of the DER
with every value in full and a comment naming each field. `values.txt` in each flow lists the
intermediate values in hex: for each KEMRecipientInfo the ML-KEM randomness m, the shared secret,
the ciphertext, DER(CMSORIforKEMOtherInfo) (the KDF input, also a file `*-kdf-input.der`), the KEK,
the CEK, the wrapped key, the IV or nonce and the encrypted content; for the proof of possession
ss, DER(KemOtherInfo), K and the MAC; for the PasswordRecipientInfo the salt, iteration count,
derived KEK and wrapped key; for each SignerInfo the DER of the signed attributes.

`index.json` lists every file with `path`, `asn1_type` (ContentInfo, Certificate,
CertificationRequest, SubjectPublicKeyInfo, KemCiphertextInfo, KemOtherInfo, KemPopProof,
CMSORIforKEMOtherInfo, OneAsymmetricKey, or text) and `description`.

## How the bytes are fixed

* Keys come from seeds: SHAKE-256("pqscep vectors/" || name), 32 octets for ML-DSA (FIPS 204
  xi), 64 for ML-KEM (FIPS 203 d || z); the P-256 scalar is the 32-octet value modulo n.
* ML-DSA signatures use FIPS 204's deterministic variant (rnd = 32 zero octets), pure mode,
  empty context. ECDSA signatures use RFC 6979 deterministic nonces.
* ML-KEM encapsulations are FIPS 203 ML-KEM.Encaps_internal(ek, m) with m from a stream.
* Every other random value (senderNonce, CEK, IV, GCM nonce, serial number, PBKDF2 salt, PWRI
  padding) comes from a stream: call i of stream "name" returns
  SHAKE-256(len(label) as 4 octets || label || i as 8 octets), label = "pqscep vectors/" || name
  (pqscep.vectors.fips.DeterministicRandom). The streams are named after the flow and the side
  (e.g. `pq-enrollment/requester`, `pq-enrollment/ca/CertRep-gcm`, `ca/serials`).
* Times are fixed: the CA certificate is made at {ca_time} (valid from {ca_from}, {ca_days}
  days), the kem-pop-statement identity certificate at {identity_time}, every request at
  {request_time} and each reply a minute after the message it answers.

Certificates and CSRs are made by pqscep's CA and client code with cryptography's builders and
then signed again deterministically over the same to-be-signed octets (pqscep.vectors.keys).
Nothing in pqscep's production code knows about the vectors: the deterministic keys are
subclasses of cryptography's key classes that the project's key dispatch accepts as they are.

## Keys

| name | algorithm | role | seed (hex) |
| --- | --- | --- | --- |
{key_rows}

Challenge password (CSR challengePassword, and the PasswordRecipientInfo password):
`{password}`; PBKDF2 iteration count {iterations}.

## Checking with OpenSSL 3.6

    openssl cms -verify -binary -inform DER -in {request} -noverify -out env.der
    openssl cms -decrypt -binary -inform DER -in env.der -inkey keys/kem-recipient.key.der \\
        -recip {recipient} -out csr.der

(OpenSSL 3.6 reads the DER keys and certificates as they are.) CertReps verify with `-CAfile` the CA certificate (as PEM) and `-attime` their signingTime; the
PasswordRecipientInfo envelopes open with `-pwri_password {password}`.
"""  # noqa: E501  the generated README's table rows are one line each; its text is fixed byte for byte


def readme(v) -> str:
    rows = []
    for name, kind, role in mat.KEY_NAMES:
        size = 32 if kind in ("ML-DSA-65", "P-256") else 64
        rows.append(f"| `{name}` | {kind} | {role} | `{mat.seed(name, size).hex()}` |")
    paths = [entry["path"] for entry in v.out.index]
    return _TEXT.format(
        request=next(p for p in paths if p.endswith("-PKCSReq-gcm.der")),
        recipient=next(p for p in paths if p.endswith("-kem-recipient-certificate.der")),
        ca_time=mat.CA_TIME.isoformat(),
        ca_from=v.ca_cert.not_valid_before_utc.isoformat(),
        ca_days=mat.CA_DAYS,
        identity_time=mat.IDENTITY_TIME.isoformat(),
        request_time=mat.REQUEST_TIME.isoformat(),
        key_rows="\n".join(rows),
        password=mat.CHALLENGE_PASSWORD,
        iterations=mat.PWRI_ITERATIONS,
    )
