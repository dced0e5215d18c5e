"""The SDK's entry point: `connect()` returns a `Client` bound to one hub and one user's token."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

import httpx

from openledger_sdk.errors import NotConnectedError, OpenLedgerError, error_message

if TYPE_CHECKING:
    from openledger_sdk.attribution import Attribution
    from openledger_sdk.datanets import Datanets
    from openledger_sdk.governance import Governance
    from openledger_sdk.models import Models
    from openledger_sdk.openlora import OpenLoRA
    from openledger_sdk.rewards import Rewards
    from openledger_sdk.wallet import Wallet


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RETRY_STATUSES = frozenset({502, 503, 504})  # the hub's proxy while a service restarts
RETRY_DELAYS_S = (0.5, 1.5, 4.0)  # then give up: four attempts in all


class Client:
    """Talks to the platform services through the hub's proxy, as the token's owner."""

    def __init__(self, hub_url: str, token: str, timeout: float = 60) -> None:
        self.hub_url = hub_url.rstrip("/")
        self._http = httpx.Client(base_url=self.hub_url, headers={"Authorization": f"token {token}"}, timeout=timeout)

    def __repr__(self) -> str:
        return f"<openledger_sdk.Client {self.hub_url}>"

    def service_url(self, service: str, path: str = "") -> str:
        return f"/services/{service}/{path.lstrip('/')}"

    def send(
        self,
        method: str,
        url: str,
        *,
        content: Callable[[], Iterator[bytes]] | Any = None,
        retry: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """One HTTP call, retried on connection errors and on 502/503/504 (unless `retry` is False). Writes carry an
        `Idempotency-Key` (the same on every attempt), so a retry of a write that did happen returns its first answer
        instead of repeating it. `content` may be a function returning the body's chunks: called again per attempt."""
        headers = dict(kwargs.pop("headers", None) or {})
        if method.upper() in WRITES:
            headers.setdefault("Idempotency-Key", uuid.uuid4().hex)
        for delay in (*RETRY_DELAYS_S, None) if retry else (None,):
            body = content() if callable(content) else content
            _rewind(kwargs.get("files"))  # multipart file objects were read by the failed attempt
            try:
                response = self._http.request(method, url, content=body, headers=headers, **kwargs)
            except httpx.TransportError as err:
                if delay is None:
                    raise OpenLedgerError(f"cannot reach {self.hub_url} ({err.__class__.__name__}: {err})") from None
            else:
                if response.status_code not in RETRY_STATUSES or delay is None:
                    return response
            time.sleep(delay)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def request(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        """One call to a service; raises OpenLedgerError with the service's message on failure."""
        # Platform writes honour Idempotency-Key; an inference would be run (and paid) again: not retried.
        retry = method.upper() not in WRITES or service == "platform"
        response = self.send(method, self.service_url(service, path), retry=retry, **kwargs)
        if response.status_code >= 400:
            raise OpenLedgerError(error_message(response), response.status_code)
        return response.json() if response.content else None

    @cached_property
    def datanets(self) -> Datanets:
        """Create, browse, contribute to and load datanets (`ol.datanets.get("name").load()`)."""
        from openledger_sdk.datanets import Datanets

        return Datanets(self)

    def whoami(self) -> dict:
        """The hub user this client acts as: name, admin flag and groups."""
        return self.request("GET", "platform", "api/me")

    @cached_property
    def wallet(self) -> Wallet:
        """Your platform wallet: `.address`, `.balance()`, `.link(account)` (made on first use)."""
        from openledger_sdk.wallet import Wallet

        return Wallet(self)

    @cached_property
    def models(self) -> Models:
        """Published fine-tuned models: `.list()`, `.get(name)`, `.publish(trained, name, price_per_1k_tokens)`."""
        from openledger_sdk.models import Models

        return Models(self)

    @cached_property
    def rewards(self) -> Rewards:
        """Your OPEN rewards: `.pending()`, `.claim()`, `.proof()`."""
        from openledger_sdk.rewards import Rewards

        return Rewards(self)

    @cached_property
    def attribution(self) -> Attribution:
        """Why an inference paid whom: `.explain(request_id)`, then `.verify()` against the chain."""
        from openledger_sdk.attribution import Attribution

        return Attribution(self)

    @cached_property
    def governance(self) -> Governance:
        """Vote on the fee split, cap, platform fee and training price: `.delegate()`, `.propose()`, `.vote()`."""
        from openledger_sdk.governance import Governance

        return Governance(self)

    @cached_property
    def openlora(self) -> OpenLoRA:
        """Chat with the base model or a published adapter: `.chat(model, messages, stream=...)`, `.deploy(model)`."""
        from openledger_sdk.openlora import OpenLoRA

        return OpenLoRA(self)

    def close(self) -> None:
        self._http.close()


def _rewind(files: Any) -> None:
    for item in files or ():
        part = item[1] if isinstance(item, tuple) else item
        handle = part[1] if isinstance(part, tuple) else part
        if hasattr(handle, "seek"):
            handle.seek(0)


def connect(url: str | None = None, token: str | None = None) -> Client:
    """Connect to an OpenLedger hub.

    In a hub kernel no arguments are needed: the hub URL and the server's API token come from the
    environment (`OPENLEDGER_HUB_URL`, `JUPYTERHUB_API_TOKEN`). Elsewhere pass the hub URL and a token
    from the hub's Token page.
    """
    hub_url = url or os.environ.get("OPENLEDGER_HUB_URL")
    api_token = token or os.environ.get("OPENLEDGER_API_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not hub_url or not api_token:
        raise NotConnectedError(
            "no hub to connect to: call connect('http://HUB:8000', token) with a token from the hub's Token page"
        )
    return Client(hub_url, api_token)
