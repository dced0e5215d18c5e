"""Chat with the hub's OpenLoRA server: the base model or any published adapter, one call or streamed.

    reply = ol.openlora.chat("my-model", [{"role": "user", "content": "Hi"}])
    reply["choices"][0]["message"]["content"], reply["price"], reply["usage"]
    for piece in ol.openlora.chat("my-model", messages, stream=True):
        print(piece, end="")
    ol.openlora.deploy("my-model")   # published models are served on demand; this loads and checks it now (free)
    ol.openlora.deploy("my-model", wait_for_attribution=300)  # ... and waits until its answers are attributed

The server speaks OpenAI's API, so `openai.OpenAI(base_url=ol.openlora.base_url, api_key=token)` works too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from openledger_sdk.errors import OpenLedgerError, error_message

if TYPE_CHECKING:
    from openledger_sdk.client import Client


class OpenLoRA:
    def __init__(self, client: Client) -> None:
        self._client = client

    @property
    def base_url(self) -> str:
        return f"{self._client.hub_url}/services/openlora/v1"

    def models(self) -> list[str]:
        """Ids the server answers to: the base model and every listed published model."""
        return [model["id"] for model in self._client.request("GET", "openlora", "v1/models")["data"]]

    def chat(
        self, model: str, messages: list[dict[str, str]], *, stream: bool = False, **options: Any
    ) -> dict[str, Any] | Iterator[str]:
        """One chat completion (a dict with `choices`, `usage`, `price`), or with `stream=True` the text pieces."""
        body = {"model": model, "messages": messages, **options}
        if not stream:
            return self._client.request("POST", "openlora", "v1/chat/completions", json=body)
        return self._stream(body | {"stream": True})

    def _stream(self, body: dict[str, Any]) -> Iterator[str]:
        url = self._client.service_url("openlora", "v1/chat/completions")
        with self._client._http.stream("POST", url, json=body) as response:
            if response.status_code >= 400:
                response.read()
                raise OpenLedgerError(error_message(response), response.status_code)
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[len("data: ") :])
                if "error" in event:
                    raise OpenLedgerError(f"chat failed mid-stream: {event['error'].get('message')}")
                for choice in event.get("choices", []):
                    piece = choice.get("delta", {}).get("content")
                    if piece:
                        yield piece

    def deploy(self, model: str | dict[str, Any], *, wait_for_attribution: float = 0) -> str:
        """Make sure a published model is served: it must be listed, and the server loads it now. Free: no inference
        is made, nothing is recorded or charged.

        A newly served adapter's attribution null threshold is calibrated once, in the background; until then its
        answers say `"status": "pending"` and credit nobody. `wait_for_attribution` (seconds) waits for that
        calibration to end (it returns anyway at the deadline: answers then still say which)."""
        name = model if isinstance(model, str) else model["name"]
        if name not in self.models():
            raise OpenLedgerError(f"{name!r} is not served: publish it first (ol.models.publish) or check its name")
        deadline = time.monotonic() + wait_for_attribution
        while True:
            try:
                info = self._client.request("POST", "openlora", f"v1/models/{quote(name, safe='')}/load")
            except OpenLedgerError as err:
                raise OpenLedgerError(f"{name!r} did not load: {err}", err.status) from None
            if info.get("attribution") != "pending" or time.monotonic() >= deadline:
                return name
            time.sleep(min(2.0, max(deadline - time.monotonic(), 0.0)))
