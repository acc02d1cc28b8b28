"""The SCEP service: the CA, its policy and the store put together behind four operations."""
