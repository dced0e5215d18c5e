"""The chain relay: a transactional outbox (hub.relay.outbox) and one worker per signer that signs, sends and
confirms its rows (hub.relay.worker), run inside the platform service or alone as `python -m hub.relay`.

Features write chain calls with `enqueue(session, call, signer=OPERATOR, kind=..., ref=...)` in their own
transaction; see docs/ledger.md.
"""

from hub.relay.outbox import OPERATOR, OutboxEntry, OutboxStatus, enqueue, user_signer

__all__ = ["OPERATOR", "OutboxEntry", "OutboxStatus", "enqueue", "user_signer"]
