"""`ol.models`: the fine-tuned models registered on the platform — list, get, publish.

    ol.models.list()                       # every published model you can see
    ol.models.get("support-bot")           # one model record (owner, base model, price, manifest hash, chain tx)
    ol.models.publish(trained, "support-bot", price_per_1k_tokens=0.5)

Publishing reads the saved model folder (a `TrainedModel` or its path); torch is not needed for any of this.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from openledger_sdk.client import Client

MODELS_PATH = "api/models"


class Models:
    """Thin client for the platform's models API (`/services/platform/api/models`)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, *, mine: bool = False, base: str | None = None) -> list[dict[str, Any]]:
        """Published models, newest first; `mine=True` for yours only, `base=` to filter by base model."""
        params: dict[str, Any] = {"mine": mine}
        if base:
            params["base"] = base
        return self._client.request("GET", "platform", MODELS_PATH, params=params)

    def get(self, name_or_id: str | int) -> dict[str, Any]:
        """One model record by name or id."""
        return self._client.request("GET", "platform", f"{MODELS_PATH}/{quote(str(name_or_id), safe='')}")

    def publish(self, model: Any, name: str, price_per_1k_tokens: float | str | Decimal) -> dict[str, Any]:
        """Upload a complete `TrainedModel` (or saved model folder) and register it on-chain at this price."""
        from openledger_sdk.modelfactory.publish import publish

        return publish(self._client, model if not isinstance(model, str) else Path(model), name, price_per_1k_tokens)
