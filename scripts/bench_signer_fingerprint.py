"""What a cache of signer-key fingerprints would save (docs/benchmarks.md, issue #22 item 6):
the cost of `policy.key_fingerprint(cert.public_key())`, which a PKIOperation computes up to
three times, for RSA-2048, EC P-256 and ML-DSA-65 signer certificates."""

import datetime
import timeit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from pqscep.ca import policy
from pqscep.crypto.keys import generate_key

NOW = datetime.datetime.now(datetime.UTC)
NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")])

for key_type in ("rsa-2048", "ec-p256", "ml-dsa-65"):
    key = generate_key(key_type)
    builder = (x509.CertificateBuilder().subject_name(NAME).issuer_name(NAME).public_key(key.public_key())
               .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + datetime.timedelta(days=1)))
    cert = builder.sign(key, None if key_type.startswith("ml-dsa") else hashes.SHA256())
    per_call = min(timeit.repeat(lambda c=cert: policy.key_fingerprint(c.public_key()), number=2000, repeat=5)) / 2000
    print(f"{key_type}: {per_call * 1e6:.1f} us per fingerprint, {3 * per_call * 1e6:.1f} us per request")
