"""The attacks of a hostile client, sent as the attacker would send them, over real HTTP to
`pqscep serve` (tests/server_proc.py), each of which must fail. docs/security.md is the threat
model these tests pin. Each section holds its own fixtures.

Sections: authorization (who may obtain which name), envelopes (padding and batch oracles,
PasswordRecipientInfo cost), the challenge webhook, bounded state and files, transaction IDs
and KEM challenges, CA rollover.
"""

from __future__ import annotations

# == authorization ============================================================================

# == envelopes ================================================================================

# == webhook, bounded state, files and logs ===================================================

# == transaction IDs and KEM challenges =======================================================

# == rollover =================================================================================
