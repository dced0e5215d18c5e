"""The OpenLoRA side of bench/attribution_real.py: the real app served over HTTP (hub auth stubbed with one bench
token: the hub's token check is tested elsewhere), and timed chat requests, plain and streamed."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import HTTPException, Request

from hub.auth import HubUser, current_user
from hub.openlora import EngineConfig, OpenLoRAEngine
from hub.openlora.api import create_app
from hub.openlora.attribution import AttributionConfig, InferenceAttribution
from openledger_sdk.modelfactory.attribution_calibration import null_prompts
from tests.local_server import serving

TOKEN = "bench-token"

# --- the server --------------------------------------------------------------------------------------------------


def _bench_user(request: Request) -> HubUser:
    if request.headers.get("Authorization", "").partition(" ")[2].strip() != TOKEN:
        raise HTTPException(401, "invalid token")
    return HubUser(name="bench", admin=False, groups=(), scopes=frozenset({"access:services"}), kind="user")


@contextmanager
def openlora(base: Path, adapters_dir: Path, dtype: str, prompts: int) -> Iterator[dict[str, Any]]:
    engine = OpenLoRAEngine(
        base, adapters_dir=adapters_dir, config=EngineConfig(max_batch_size=4, max_slots=4, dtype=dtype),
        model_name="smollm2",
    )  # fmt: skip
    attribution = InferenceAttribution(
        base, engine.tokenizer, AttributionConfig(calibration_prompts=tuple(null_prompts()[:prompts]))
    )
    app = create_app(engine, price_per_1k=lambda _m: 0.0, attribution=attribution)
    app.dependency_overrides[current_user] = _bench_user
    try:
        with serving(app) as url:
            yield {"url": url, "attribution": attribution}
    finally:
        engine.close()


def ask(http: httpx.Client, model: str, prompt: str, args: argparse.Namespace, attribution: bool) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": args.max_tokens,
            "temperature": 0, "attribution": attribution}  # fmt: skip
    started = time.perf_counter()
    reply = http.post("/v1/chat/completions", json=body)
    wall = time.perf_counter() - started
    reply.raise_for_status()
    data = reply.json()
    return {"text": data["choices"][0]["message"]["content"], "attribution": data.get("attribution"), "wall": wall,
            "tokens": data["usage"]["completion_tokens"]}  # fmt: skip


def ask_streamed(http: httpx.Client, model: str, prompt: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time to the last content token (what the user reads) and to the final chunk (which carries attribution)."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": args.max_tokens,
            "temperature": 0, "stream": True}  # fmt: skip
    started = time.perf_counter()
    last_text = final = None
    attribution = None
    with http.stream("POST", "/v1/chat/completions", json=body) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            choice = (chunk.get("choices") or [{}])[0]
            if choice.get("delta", {}).get("content"):
                last_text = time.perf_counter() - started
            if choice.get("finish_reason"):
                final = time.perf_counter() - started
                attribution = chunk.get("attribution")
    return {"last_token": last_text or final, "final": final, "attribution": attribution}


def wait_calibrated(server: dict[str, Any], folder: Path, timeout: float) -> float:
    started = time.perf_counter()
    event = server["attribution"].calibration(folder)
    if event is not None and not event.wait(timeout):
        raise TimeoutError(f"calibration of {folder.name} took more than {timeout:.0f} s")
    return time.perf_counter() - started
