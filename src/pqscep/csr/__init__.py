"""PKCS #10 certification requests (RFC 2986) for keys that cannot sign, and the RFC 9883
privateKeyPossessionStatement that ties such a request to the certificate whose key signed it.

A layer above `pqscep.crypto` (it signs and verifies) and below `pqscep.protocol`: nothing here
knows SCEP; errors are `errors.CsrError` with a reason the protocol maps to failInfo.
"""
