"""pqscep: a SCEP (RFC 8894) CA/RA server, client and tools, with a post-quantum update."""

__version__ = "0.1.0"
