"""What the OpenAI conformance checks share: the server they run against (`Target`, a real OpenLoRA server over
HTTP with the tiny model and its eight adapters), the registry (`check`, `CHECKS`) and the helpers the checks call.

Auth is the one stand-in: the hub's token check is replaced by a fixed token map (`tests.test_openlora_api`), as
JupyterHub is not started here; it is tested for real in the hub's end-to-end tests.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from hub.auth import current_user
from hub.openlora import EngineConfig, OpenLoRAEngine, SamplingParams
from hub.openlora.api import create_app
from hub.openlora.bodies import NEUTRAL_VALUES
from hub.openlora.logprobs_format import TokenTexts
from tests.local_server import serving
from tests.test_openlora_api import USER_TOKEN, _fake_user
from tests.tiny_model import ADAPTER_SPECS, shared_assets

BASE = "tiny-base"
ADAPTERS = list(ADAPTER_SPECS)
HI = [{"role": "user", "content": "Tell me about the sea"}]


@dataclass
class Target:
    url: str  # the server's root; the OpenAI base URL is url + "/v1"
    engine: OpenLoRAEngine  # only for token ids (to pick logit_bias keys); the checks talk HTTP
    _client: openai.OpenAI | None = None

    def client(self) -> openai.OpenAI:
        """One sync client for every check (its connection pool is reused)."""
        if self._client is None:
            self._client = openai.OpenAI(base_url=self.url + "/v1", api_key=USER_TOKEN, max_retries=0, timeout=60)
        return self._client

    def aclient(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=USER_TOKEN, max_retries=0, timeout=60)

    def greedy_ids(self, model: str, messages: list, max_tokens: int) -> list[int]:
        params = SamplingParams(max_tokens=max_tokens, temperature=0)
        return self.engine.generate(model, self.engine.chat_prompt_ids(messages), params).token_ids

    def token_bytes(self, token_id: int) -> bytes:
        return TokenTexts(self.engine.tokenizer).bytes(token_id)

    def token_id(self, text: str) -> int:
        ids = self.engine.encode(text)
        assert len(ids) == 1, f"{text!r} is {len(ids)} tokens"
        return ids[0]


@contextmanager
def conformance_target() -> Iterator[Target]:
    """A real OpenLoRA server (uvicorn, loopback port) over the tiny model and its eight adapters."""
    model_dir, adapters = shared_assets()
    workdir = Path(tempfile.mkdtemp(prefix="openai-conformance-"))
    try:
        shutil.copytree(adapters, workdir / "adapters")
        config = EngineConfig(max_batch_size=16, max_slots=4, max_lora_rank=16)
        with OpenLoRAEngine(model_dir, adapters_dir=workdir / "adapters", config=config, model_name=BASE) as engine:
            app = create_app(engine, price_per_1k=lambda _m: 0.0, service_prefix="/services/openlora/")
            app.dependency_overrides[current_user] = _fake_user
            with serving(app) as url:
                yield Target(url=url, engine=engine)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


CHECKS: dict[str, Callable[[Target], None]] = {}


def check(name: str) -> Callable[[Callable[[Target], None]], Callable[[Target], None]]:
    def register(fn: Callable[[Target], None]) -> Callable[[Target], None]:
        assert name not in CHECKS, name
        CHECKS[name] = fn
        return fn

    return register


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def chat(t: Target, model: str = ADAPTERS[0], messages: list | None = None, **kwargs: Any):
    kwargs = {"max_tokens": 8, "temperature": 0, **kwargs}
    return t.client().chat.completions.create(model=model, messages=messages or HI, **kwargs)


def complete(t: Target, model: str = ADAPTERS[1], prompt: Any = "Once upon a time", **kwargs: Any):
    kwargs = {"max_tokens": 8, "temperature": 0, **kwargs}
    return t.client().completions.create(model=model, prompt=prompt, **kwargs)


def refused(call: Callable[[], Any], param: str | None, error: type = openai.BadRequestError) -> Any:
    """The call fails with `error` in OpenAI's shape: a string code and `param` naming the field."""
    try:
        call()
    except error as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        assert body.get("param") == param, body
        assert isinstance(body.get("code"), str) and body.get("type"), body
        assert exc.request_id and exc.request_id.startswith("req_")
        return exc
    raise AssertionError(f"expected {error.__name__} naming {param}")


def stream_text(chunks: list) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def answer_bytes(content: list) -> bytes:
    return b"".join(bytes(entry.bytes) for entry in content)


# Not-implemented parameters only the legacy completions body has (the others are refused on chat).
COMPLETIONS_ONLY = {"suffix", "best_of", "echo"}
CHAT_ONLY_OR_BOTH = set(NEUTRAL_VALUES) - COMPLETIONS_ONLY


def run_checks(target: Target) -> dict[str, str | None]:
    """Every check by name: None if it passed, else what failed (for the script)."""
    results: dict[str, str | None] = {}
    for name, fn in CHECKS.items():
        try:
            fn(target)
            results[name] = None
        except Exception as exc:  # a failed check is a result to record, whatever it raised
            results[name] = f"{type(exc).__name__}: {exc}"[:500]
    return results
