"""vmesh identity: trust anchor and issuer, the identity service, join tokens and renewal."""
