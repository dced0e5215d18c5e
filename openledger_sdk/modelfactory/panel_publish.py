"""What the fine-tune panel shows after Publish: the model, its on-chain registration and where to watch it earn."""

from __future__ import annotations

import html
import time
from typing import Any
from urllib.parse import quote

from openledger_sdk.errors import OpenLedgerError

REGISTRATION_WAIT_S = 30.0  # how long the panel follows the relay's registration transaction
POLL_S = 1.0
IN_FLIGHT = ("pending", "signed", "sent")  # the relay's states before a registration has its final answer


def dashboard_url(hub_url: str, user: str) -> str:
    """The model-owner dashboard: through /hub/spawn, so the first visit starts the `dashboards` server too."""
    name = quote(user, safe="")
    target = f"/user/{name}/dashboards/voila/render/model_owner.ipynb"
    return f"{hub_url}/hub/spawn/{name}/dashboards?next={quote(target, safe='')}"


def follow_registration(client: Any, record: dict[str, Any], wait_s: float = REGISTRATION_WAIT_S) -> dict[str, Any]:
    """The model record again once its registration has a transaction hash (or a final state), at most `wait_s`
    later; a record without registration details is returned as it is."""
    deadline = time.monotonic() + wait_s
    while _chain(record).get("status") in IN_FLIGHT and not _chain(record).get("tx_hash"):
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
        try:
            record = client.models.get(record["name"])
        except OpenLedgerError:
            break  # keep what we have: the model is published either way
    return record


def published_html(record: dict[str, Any], client: Any) -> str:
    name = html.escape(str(record.get("name", "")))
    chain = _chain(record)
    tx = chain.get("tx_hash")
    status = html.escape(str(chain.get("status", "unknown")))
    registration = (
        f"on-chain registration {status}, transaction <code>{html.escape(tx)}</code>"
        if tx
        else f"on-chain registration {status} (the relay sends it in a moment)"
    )
    manifest = html.escape(str(record.get("manifest_hash", ""))[:16])
    link = ""
    try:
        user = client.whoami()["name"]
        link = (
            f"<br><a href='{html.escape(dashboard_url(client.hub_url, user))}' target='_blank'>"
            f"open {name} in the model-owner dashboard</a>"
        )
    except (OpenLedgerError, AttributeError, KeyError):
        pass  # no hub identity to build the link with: the rest still says what happened
    return (
        f"<span style='color:#1b5e20'>published <b>{name}</b></span> (manifest {manifest}…): {registration}. "
        f"Ask it in notebook 04.{link}"
    )


def _chain(record: dict[str, Any]) -> dict[str, Any]:
    chain = record.get("chain")
    return chain if isinstance(chain, dict) else {}
