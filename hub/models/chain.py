"""Model writes to ModelRegistry through the relay's outbox (registerModel, setPrice), signed by the operator."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from hub.models.models import PublishedModel
from hub.platform.relay_writes import RelayWriter
from hub.relay.outbox import OPERATOR, enqueue


def _hex32(sha256_hex: str) -> str:
    return "0x" + sha256_hex


class ModelRegistryWriter(RelayWriter):
    """Adds the writes to the caller's transaction; with no ledger up yet they are enqueued later by `sync_chain`."""

    @property
    def _registry(self) -> Any | None:
        ledger = self.ledger
        return ledger.models if ledger is not None else None

    def register(self, session: Session, model: PublishedModel) -> int | None:
        registry = self._registry
        if registry is None:
            return None
        call = registry.register_model(
            model.chain_id,
            model.owner_address,
            _hex32(model.base_weights_sha256),
            [entry["root"] for entry in model.datanets],
            _hex32(model.manifest_hash),
            _hex32(model.adapter_sha256),
            int(model.price_wei),
        )
        # ref = the on-chain id: a retried enqueue finds the same row (and the contract refuses a second model).
        entry = enqueue(session, call, signer=OPERATOR, kind="model.register", ref=model.chain_id)
        session.flush()
        return entry.id

    def set_price(self, session: Session, model: PublishedModel) -> int | None:
        """Enqueue setPrice with the model's current price; the caller has counted the change (`price_changes`)."""
        registry = self._registry
        if registry is None:
            return None
        call = registry.set_price(model.chain_id, int(model.price_wei))
        ref = f"{model.chain_id}:{model.price_changes}"  # one row per change, in order: same signer, rising nonces
        entry = enqueue(session, call, signer=OPERATOR, kind="model.price", ref=ref)
        session.flush()
        return entry.id
