"""What an inference costs and who it pays: prices from the models registry, one reward record per request.

The OpenLoRA service is its own process on the platform's database: it reads listed models' prices and owners,
and writes each inference's record (fee, split, attribution shares) with `hub.rewards.metering.record_inference`,
which the platform settles per epoch. The base model is free and unrecorded: it has no owner to pay.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.governance.periods import rewards_in_force
from hub.keys.store import WalletKeyStore
from hub.keys.wallets import ensure_wallet
from hub.models.models import PublishedModel
from hub.openlora.charging import FinishedInference
from hub.openlora.errors import InsufficientFundsError
from hub.openlora.funds import PayerFunds
from hub.rewards.metering import record_inference
from hub.rewards.money import wei_to_open
from hub.rewards.reservations import NotEnoughFundsError, Reservations
from hub.rewards.split import inference_fee
from hub.settings import Settings

PRICE_TTL_S = 5.0  # a price change reaches the server within this long


class Balances(Protocol):
    """Reads a payer's OPEN balance (PayerFunds: from the chain); None when it cannot be read now."""

    def balance(self, payer: str, address: str) -> int | None: ...


class PlatformMetering:
    def __init__(self, settings: Settings, engine: Engine, funds: Balances | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.wallet_keys = WalletKeyStore.for_data_dir(settings.data_dir)
        self.funds = funds or PayerFunds(settings, engine)
        self.reservations = Reservations(engine, settings.rewards.reservation_seconds)
        self._models: dict[str, PublishedModel] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def _listed_models(self) -> dict[str, PublishedModel]:
        with self._lock:
            if time.monotonic() - self._loaded_at > PRICE_TTL_S:
                with Session(self.engine, expire_on_commit=False) as session:
                    rows = session.exec(select(PublishedModel).where(col(PublishedModel.listed).is_(True))).all()
                self._models = {row.name: row for row in rows}
                self._loaded_at = time.monotonic()
            return self._models

    def price_per_1k(self, model: str) -> float:
        """OPEN per 1k tokens (for display in /v1/models; the charge itself is computed exactly in base units)."""
        listed = self._listed_models().get(model)
        return float(wei_to_open(int(listed.price_wei))) if listed else 0.0

    def authorize(
        self, payer: str, model: str, prompt_tokens: int, max_completion_tokens: int, request_id: str
    ) -> None:
        """Reserve the most this request can cost against the payer's spendable OPEN (atomically: see
        hub.rewards.reservations), or refuse it with InsufficientFundsError (429 insufficient_quota)."""
        listed = self._listed_models().get(model)
        if listed is None:
            return  # the base model is free
        price = int(listed.price_wei)
        platform_fee = rewards_in_force(self.engine, self.settings.rewards).platform_fee_wei  # the governed fee
        most = inference_fee(prompt_tokens, max_completion_tokens, price, price, platform_fee)
        wallet = ensure_wallet(self.engine, payer, self.wallet_keys)
        try:
            self.reservations.reserve(payer, request_id, most, self.funds.balance(payer, wallet.address))
        except NotEnoughFundsError as short:
            raise InsufficientFundsError(
                f"your wallet {wallet.address} can spend {open_text(max(short.spendable, 0))} OPEN (balance minus "
                f"fees not settled yet and requests in flight); this request to {model} may cost up to "
                f"{open_text(most)} OPEN. To get OPEN, ask your instructor or admin to fund your wallet "
                "(`openledger-workshop fund <workshop>`, or the faucet in the admin notebook), or lower max_tokens."
            ) from None

    def release(self, request_id: str) -> None:
        """The request failed or was cancelled: its reservation goes back in full."""
        self.reservations.release(request_id)

    def record(self, inference: FinishedInference) -> dict[str, Any]:
        """Record one finished inference; return the `price` (OPEN, exact decimal string) for the response."""
        listed = self._listed_models().get(inference.model)
        if listed is None:
            return {"price": "0", "recorded": False}
        ensure_wallet(self.engine, inference.payer, self.wallet_keys)  # the payer's custodial key pays at settlement
        with self.reservations.locked(inference.payer) as session:
            row = record_inference(
                session,
                request_id=inference.request_id,
                model=inference.model,
                model_owner=listed.owner_address,
                payer=inference.payer,
                prompt_tokens=inference.prompt_tokens,
                completion_tokens=inference.completion_tokens,
                price_per_1k_wei=int(listed.price_wei),
                adapter=inference.model,
                shares=dict(inference.shares or {}),
                top_examples=list(inference.top_examples),
                model_id=listed.chain_id,
                settings=self.settings.rewards,
            )
            Reservations.consume(session, inference.request_id)  # the real fee replaces the hold, atomically
            fee = int(row.fee)
        return {"price": open_text(fee), "recorded": True}


def open_text(wei: int) -> str:
    """Base units as an exact decimal OPEN string without trailing zeros ("0.00675", "0")."""
    return format(Decimal(wei_to_open(wei)).normalize(), "f")
