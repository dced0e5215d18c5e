"""Paying for a fine-tuning run in OPEN, when `finetune()` runs on a hub.

Before the first step the kernel asks the platform to reserve the run's maximum cost from the user's custodial
wallet: it sends the run's settings and which data (a datanet version, or the rows themselves), never a token
count or a payer; the platform counts the tokens itself and holds tokens × the training price, or refuses (what it
costs, what the wallet holds, how to get OPEN). When training ends the kernel reports complete / stopped / failed
and the steps done; the platform charges that (the rest of the hold is released) and pays it to the protocol.
The charge goes into the manifest, so it is part of the hash the model is registered with on-chain.

Outside a hub (no platform to pay), training is free and the manifest says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from typing import TYPE_CHECKING, Any

from openledger_sdk.errors import OpenLedgerError
from openledger_sdk.modelfactory.errors import FinetuneError

if TYPE_CHECKING:
    from openledger_sdk.client import Client
    from openledger_sdk.modelfactory.config import TrainConfig

RUNS_PATH = "api/training/runs"
UNPAID = {"paid": False, "reason": "trained outside a hub: no platform to pay (free)"}


class TrainingPaymentError(FinetuneError):
    """The platform would not reserve the run's cost (e.g. the wallet cannot cover it); nothing was charged."""


def paying_client(client: Any, fetches_datanet: bool) -> Client | None:
    """The platform connection that pays for this run, or None (outside a hub: unpaid).

    A real `Client` pays. Without one, a run that fetches a datanet by name connects (as it would for the rows), and
    so does a run in a hub kernel (the hub sets OPENLEDGER_HUB_URL); any other object (e.g. a test double serving
    rows) leaves the run unpaid."""
    from openledger_sdk.client import Client, connect

    if isinstance(client, Client):
        return client
    if client is None and (fetches_datanet or os.environ.get("OPENLEDGER_HUB_URL")):
        return connect()
    return None


class TrainingPayment:
    """One run's reservation on the platform, then its charge (`finish`, at most once)."""

    def __init__(self, client: Client, run: dict[str, Any]) -> None:
        self.client, self.run, self.charge = client, run, None

    @classmethod
    def reserve(
        cls, client: Client, config: TrainConfig, sources: list[dict], rows: list[dict], planned_steps: int
    ) -> TrainingPayment:
        body: dict[str, Any] = {"run_id": uuid.uuid4().hex, "config": config.to_dict()}
        if sources and sources[0].get("verified"):
            body |= {"datanet": sources[0]["name"], "version": sources[0]["version"]}
        else:  # rows handed in directly: the platform counts their tokens itself
            body["rows"] = json.loads(json.dumps(rows, default=str))
        try:
            run = client.request("POST", "platform", RUNS_PATH, json=body)
        except OpenLedgerError as err:
            if err.status == 413:
                raise TrainingPaymentError(
                    "too many rows to send for pricing: publish them as a datanet version and train on that"
                ) from None
            if err.status == 402:  # the platform's refusal says it all: cost, wallet, how to get OPEN
                raise TrainingPaymentError(str(err).partition(" → 402: ")[2] or str(err), 402) from None
            raise TrainingPaymentError(f"the platform did not reserve the training cost: {err}", err.status) from None
        payment = cls(client, run)
        if run["planned_steps"] != planned_steps:  # the platform counted other data: never train on a wrong price
            payment.finish("failed", 0)
            raise TrainingPaymentError(
                f"the platform planned {run['planned_steps']} steps for this run, this kernel {planned_steps}: the "
                "base model or data differ between them; nothing was charged"
            )
        return payment

    @property
    def finished(self) -> bool:
        return self.charge is not None

    def finish(self, outcome: str, steps: int, tokens: int = 0) -> dict[str, Any]:
        """Report how the run ended; the platform charges it and answers with the charge."""
        body = {"outcome": outcome, "steps": steps, "tokens": tokens}
        path = f"{RUNS_PATH}/{self.run['run_id']}/finish"
        self.charge = self.client.request("POST", "platform", path, json=body)
        return self.charge

    def fail_quietly(self, steps: int) -> None:
        """After an error in training: charge the steps done; the error being raised matters more than this."""
        if self.finished:
            return
        # Unreachable platform: the hold is charged in full when it expires; the run's own error is what matters.
        with contextlib.suppress(OpenLedgerError):
            self.finish("failed", steps)

    def manifest_entry(self) -> dict[str, Any]:
        charge = self.charge or self.run
        transfer = charge.get("transfer") or {}
        return {
            "paid": charge["status"] in ("paid", "free"),
            "run_id": charge["run_id"],
            "status": charge["status"],
            "outcome": charge["outcome"],
            "steps": charge["steps"],
            "tokens": charge["tokens"],
            "price_per_token": charge["price_per_token"],
            "amount": charge["amount"],
            "amount_wei": charge["amount_wei"],
            "payer_address": charge["payer_address"],
            "paid_to": charge["paid_to"],
            "tx_hash": transfer.get("tx_hash"),
        }


class StepCounter:
    """Counts optimizer steps as they finish (what a failed run is charged for)."""

    def __init__(self) -> None:
        self.steps = 0

    def on_step(self, info: Any) -> None:
        self.steps = info.step


def training_charge(payment: TrainingPayment | None) -> dict[str, Any]:
    """The manifest's `training_charge`: the platform's charge, or that the run was not paid."""
    return payment.manifest_entry() if payment is not None else dict(UNPAID)
