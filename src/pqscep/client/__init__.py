"""The SCEP requester (RFC 8894) over HTTP, on top of the sans-IO `protocol.client`:

- `transport`, `keepalive`: the HTTP exchanges;
- `session`: one endpoint (capabilities, CA certificates, one pkiMessage round trip);
- `signer`: `RequestSigner`, who signs a request and with what;
- `requester`: key and certificate files, what a key can do with a CA, transactionIDs;
- `workflows`: enroll, renew, poll, GetCert, GetCRL; `kem`: the enrollment of ML-KEM keys;
- `outcome`, `pending`, `errors`: what the workflows return, save and raise.
"""
