"""The payer's OPEN balance on chain, for the fee reservation (hub.rewards.reservations).

Fees are charged from the payer's custodial wallet when the epoch settles; a payer who cannot pay then is marked
unpaid and the inference pays nobody — the model owner and the contributors would have served it for free. So the
server reserves before generating: balance − unsettled fees − open reservations ≥ the most this request can cost.

The chain is read directly (the same RPC URL and contract addresses the platform uses, from the data dir). When the
ledger is not deployed yet or the chain does not answer, the check is skipped (logged): an outage of the chain must
not stop inference; settlement still refuses what cannot be paid.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from sqlalchemy.engine import Engine

from hub.ledger.contracts import Ledger
from hub.ledger.deploy import connect, deployments_dir
from hub.settings import Settings

log = logging.getLogger(__name__)
RETRY_S = 30.0  # after a failed connection, requests skip the check this long instead of each probing a dead chain


class PayerFunds:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._ledger: Ledger | None = None
        self._retry_at = 0.0  # monotonic time before which no reconnection is tried
        self._lock = threading.Lock()

    def balance(self, payer: str, address: str) -> int | None:
        """`address`'s OPEN balance in base units, or None when the chain cannot be read now."""
        ledger = self._ledger_or_none()
        if ledger is None:
            return None
        try:
            return ledger.token.balance_of(address)
        except Exception as err:  # noqa: BLE001 - any RPC failure: skip the check, do not fail the request
            log.warning("funds check skipped: cannot read %s's balance (%s)", payer, err)
            with self._lock:
                self._ledger, self._retry_at = None, time.monotonic() + RETRY_S
            return None

    def _ledger_or_none(self) -> Ledger | None:
        with self._lock:
            if self._ledger is None and time.monotonic() >= self._retry_at:
                chain_id = self.settings.chain.chain_id
                record = deployments_dir(self.settings.data_dir, chain_id) / "deployments.json"
                if not record.is_file():
                    return None  # the platform has not deployed or attached the contracts yet
                try:
                    w3 = connect(self.settings.chain_rpc_url, chain_id, timeout=3)
                    self._ledger = Ledger.at(w3, chain_id, json.loads(record.read_text())["contracts"])
                except Exception as err:  # noqa: BLE001 - unreachable or wrong chain: skip the check
                    log.warning("funds check skipped for %.0f s: %s", RETRY_S, err)
                    self._retry_at = time.monotonic() + RETRY_S
                    return None
            return self._ledger
