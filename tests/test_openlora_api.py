"""OpenLoRA HTTP API in a real uvicorn server, driven by the official `openai` client and by httpx.

Auth: `hub.auth.current_user` is overridden with a stub that maps two fixed tokens to a user and an admin;
the real `admin_user` dependency runs on top of it. The real hub token check (HubAuth against a running
JupyterHub) is tested end-to-end elsewhere, with the hub and its services started for real.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import torch
from fastapi import HTTPException, Request

from hub.auth import HubUser, current_user
from hub.openlora import EngineConfig, OpenLoRAEngine, SamplingParams
from hub.openlora.api import create_app
from hub.openlora.attribution import InferenceAttribution
from hub.openlora.config import serving_dtype
from tests.local_server import serving
from tests.tiny_model import ADAPTER_SPECS, build_random_adapter, shared_assets

torch.set_num_threads(2)
ADAPTERS = list(ADAPTER_SPECS)
USER_TOKEN, ADMIN_TOKEN = "user-token", "admin-token"
PRICES = {ADAPTERS[0]: 2.0, ADAPTERS[1]: 0.5}


def _fake_user(request: Request) -> HubUser:
    header = request.headers.get("Authorization", "")
    token = header.partition(" ")[2].strip()
    if token == USER_TOKEN:
        return HubUser(name="alice", admin=False, groups=(), scopes=frozenset({"access:services"}), kind="user")
    if token == ADMIN_TOKEN:
        return HubUser(name="root", admin=True, groups=(), scopes=frozenset({"access:services"}), kind="user")
    raise HTTPException(401, "invalid or expired JupyterHub token")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model_dir, adapters = shared_assets()
    adapters_dir = tmp_path_factory.mktemp("api") / "adapters"
    shutil.copytree(adapters, adapters_dir)
    engine = OpenLoRAEngine(
        model_dir,
        adapters_dir=adapters_dir,
        config=EngineConfig(max_batch_size=16, max_slots=4, max_lora_rank=16),
        model_name="tiny-base",
    )
    app = create_app(
        engine,
        price_per_1k=lambda m: PRICES.get(m, 0.0),
        attribution=InferenceAttribution(model_dir, engine.tokenizer),
        service_prefix="/services/openlora/",
    )
    app.dependency_overrides[current_user] = _fake_user
    with serving(app) as url:
        yield {"url": url, "engine": engine, "adapters_dir": adapters_dir}
    engine.close()


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=USER_TOKEN, max_retries=0, timeout=60)


def _auth(token: str = USER_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_models_lists_base_and_adapters(client, server):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"tiny-base", *ADAPTERS}
    assert models[ADAPTERS[0]].model_extra["parent"] == "tiny-base"
    assert models[ADAPTERS[0]].model_extra["price_per_1k_tokens"] == 2.0


def test_completion_matches_engine_and_reports_usage_and_price(client, server):
    engine: OpenLoRAEngine = server["engine"]
    prompt = "The quick brown fox"
    out = client.completions.create(model=ADAPTERS[0], prompt=prompt, max_tokens=7, temperature=0)
    direct = engine.generate(ADAPTERS[0], prompt, SamplingParams(max_tokens=7, temperature=0))
    assert out.choices[0].text == direct.text
    assert out.choices[0].finish_reason in ("length", "stop")
    assert out.usage.prompt_tokens == len(engine.encode(prompt))
    assert out.usage.completion_tokens == direct.completion_tokens
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert out.model_extra["price"] == pytest.approx(out.usage.total_tokens / 1000 * 2.0)
    # These random adapters were never trained on a datanet: the response says why nobody is credited.
    assert out.model_extra["attribution"]["attributed"] is False
    assert "without an attribution index" in out.model_extra["attribution"]["reason"]


def test_chat_completion_applies_template(client, server):
    engine: OpenLoRAEngine = server["engine"]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    out = client.chat.completions.create(model=ADAPTERS[1], messages=messages, max_tokens=6, temperature=0)
    ids = engine.chat_prompt_ids(messages)
    direct = engine.generate(ADAPTERS[1], ids, SamplingParams(max_tokens=6, temperature=0))
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == direct.text
    assert out.usage.prompt_tokens == len(ids)
    assert out.model_extra["price"] == pytest.approx(out.usage.total_tokens / 1000 * 0.5)


def test_streaming_chat_and_completion_with_openai_client(client):
    messages = [{"role": "user", "content": "stream please"}]
    full = client.chat.completions.create(model=ADAPTERS[2], messages=messages, max_tokens=10, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model=ADAPTERS[2],
            messages=messages,
            max_tokens=10,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason == full.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == full.usage.total_tokens

    done = client.completions.create(model="tiny-base", prompt="Once upon", max_tokens=8, temperature=0)
    streamed = list(
        client.completions.create(model="tiny-base", prompt="Once upon", max_tokens=8, temperature=0, stream=True)
    )
    assert "".join(c.choices[0].text for c in streamed) == done.choices[0].text
    assert streamed[-1].choices[0].finish_reason == done.choices[0].finish_reason


def test_sse_wire_format_ends_with_done(server):
    body = {"model": ADAPTERS[3], "prompt": "wire format", "max_tokens": 4, "temperature": 0, "stream": True}
    with httpx.stream("POST", server["url"] + "/v1/completions", json=body, headers=_auth(), timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(p["object"] == "text_completion" and p["model"] == ADAPTERS[3] for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] is not None
    assert "price" in payloads[-1] and payloads[-1]["attribution"]["attributed"] is False


def test_unknown_model_is_404_naming_the_list_endpoint(server, client):
    r = httpx.post(
        server["url"] + "/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
        headers=_auth(),
    )
    assert r.status_code == 404
    err = r.json()["error"]
    assert "/v1/models" in err["message"] and err["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError, match="/v1/models"):
        client.completions.create(model="nope", prompt="hi")


def test_bad_requests_are_400(server):
    url = server["url"] + "/v1/completions"
    r = httpx.post(url, json={"model": ADAPTERS[0], "prompt": "hi", "max_tokens": 10_000}, headers=_auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = httpx.post(url, json={"model": ADAPTERS[0], "prompt": "hi", "temperature": 5}, headers=_auth())
    assert r.status_code == 400 and "temperature" in r.json()["error"]["message"]
    r = httpx.post(url, json={"model": ADAPTERS[0]}, headers=_auth())
    assert r.status_code == 400 and "prompt" in r.json()["error"]["message"]


def test_auth_required_and_admin_only_adapter_admin(server, tmp_path):
    url = server["url"]
    assert httpx.get(url + "/v1/models").status_code == 401
    new_dir = build_random_adapter(shared_assets()[0], tmp_path / "elsewhere", rank=4, seed=99)
    body = {"model": "runtime-adapter", "path": str(new_dir)}
    r = httpx.post(url + "/v1/adapters/load", json=body, headers=_auth(USER_TOKEN))
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
    r = httpx.post(url + "/v1/adapters/load", json=body, headers=_auth(ADMIN_TOKEN), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["rank"] == 4 and r.json()["tier"] == "cpu"
    ids = [m["id"] for m in httpx.get(url + "/v1/models", headers=_auth()).json()["data"]]
    assert "runtime-adapter" in ids
    r = httpx.post(
        url + "/v1/completions",
        json={"model": "runtime-adapter", "prompt": "hi", "max_tokens": 3},
        headers=_auth(),
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    assert httpx.post(url + "/v1/adapters/unload", json=body, headers=_auth(USER_TOKEN)).status_code == 403
    r = httpx.post(url + "/v1/adapters/unload", json={"lora_name": "runtime-adapter"}, headers=_auth(ADMIN_TOKEN))
    assert r.status_code == 200 and r.json()["still_on_disk"] is False
    ids = [m["id"] for m in httpx.get(url + "/v1/models", headers=_auth()).json()["data"]]
    assert "runtime-adapter" not in ids
    # A corrupt adapter: a clear error, nothing registered.
    bad = tmp_path / "bad"
    shutil.copytree(new_dir, bad)
    (bad / "adapter_model.safetensors").write_bytes(b"junk")
    r = httpx.post(url + "/v1/adapters/load", json={"model": "bad-one", "path": str(bad)}, headers=_auth(ADMIN_TOKEN))
    assert r.status_code == 500 and "adapter `bad-one` could not be loaded" in r.json()["error"]["message"]
    assert "bad-one" not in [m["id"] for m in httpx.get(url + "/v1/models", headers=_auth()).json()["data"]]


@pytest.fixture
def slow_decode(server, monkeypatch):
    """10 ms per decode step: a long request surely outlives the client that is about to go away."""
    engine: OpenLoRAEngine = server["engine"]
    decode = engine.runner.decode

    def slow(*args, **kwargs):
        time.sleep(0.01)
        return decode(*args, **kwargs)

    monkeypatch.setattr(engine.runner, "decode", slow)


def test_client_disconnect_mid_stream_frees_the_slot(server, slow_decode):
    engine: OpenLoRAEngine = server["engine"]
    cancelled_before = engine.metrics.requests.labels(ADAPTERS[4], "cancelled")._value.get()
    body = {"model": ADAPTERS[4], "prompt": "a long story", "max_tokens": 200, "temperature": 0, "stream": True}
    with httpx.stream("POST", server["url"] + "/v1/completions", json=body, headers=_auth(), timeout=30) as r:
        lines = r.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        assert engine.slots.pinned_count() >= 1
    # Leaving the `with` closed the connection mid-stream.
    deadline = time.time() + 10
    while (engine.scheduler.running or engine.slots.pinned_count()) and time.time() < deadline:
        time.sleep(0.02)
    assert not engine.scheduler.running and engine.slots.pinned_count() == 0
    assert engine.metrics.requests.labels(ADAPTERS[4], "cancelled")._value.get() == cancelled_before + 1


def test_client_gone_before_a_non_streamed_answer_cancels_it(server, slow_decode):
    engine: OpenLoRAEngine = server["engine"]
    cancelled_before = engine.metrics.requests.labels(ADAPTERS[6], "cancelled")._value.get()
    body = {"model": ADAPTERS[6], "prompt": "a very long answer", "max_tokens": 240, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server["url"] + "/v1/completions", json=body, headers=_auth(), timeout=0.3)
    deadline = time.time() + 10
    while engine.metrics.requests.labels(ADAPTERS[6], "cancelled")._value.get() == cancelled_before:
        assert time.time() < deadline, "the abandoned request was not cancelled"
        time.sleep(0.02)
    while engine.scheduler.running and time.time() < deadline:
        time.sleep(0.02)
    assert not engine.scheduler.running and engine.slots.pinned_count() == 0


def test_health_metrics_and_service_prefix(server, client):
    client.completions.create(model=ADAPTERS[5], prompt="count me", max_tokens=2)
    url = server["url"]
    assert httpx.get(url + "/health").json()["status"] == "ok"
    assert httpx.get(url + "/services/openlora/health").json()["model"] == "tiny-base"
    # Per-model counts are not for everyone: a token with read:metrics (or an admin's) is needed.
    assert httpx.get(url + "/metrics").status_code == 401
    assert httpx.get(url + "/metrics", headers=_auth()).status_code == 403
    text = httpx.get(url + "/metrics", headers=_auth(ADMIN_TOKEN)).text
    for name in (
        f'openlora_requests_total{{model="{ADAPTERS[5]}",status="ok"}}',
        "openlora_adapter_cache_hits_total",
        "openlora_adapter_load_seconds_bucket",
        "openlora_batch_size_bucket",
        f'openlora_generated_tokens_total{{model="{ADAPTERS[5]}"}}',
        "openlora_tokens_per_second",
    ):
        assert name in text, name
    prefixed = openai.OpenAI(base_url=url + "/services/openlora/v1", api_key=USER_TOKEN, max_retries=0)
    assert "tiny-base" in [m.id for m in prefixed.models.list()]


def test_main_module_serves(tmp_path):
    model_dir, adapters = shared_assets()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hub.openlora", "--model-dir", str(model_dir), "--adapters-dir", str(adapters)]
    cmd += ["--port", str(port), "--threads", "1", "--max-batch-size", "4", "--max-slots", "2", "--max-lora-rank", "16"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                time.sleep(0.2)
        expected_dtype = serving_dtype("cpu")  # --dtype auto: bf16 on CPUs with AMX / AVX512-BF16
        assert r.json() == {
            "status": "ok",
            "model": "model",
            "device": "cpu",
            "dtype": expected_dtype,
            "waiting": 0,
            "running": 0,
        }
        # Real hub auth: no token, no service.
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_base_model_and_opt_out_carry_no_attribution(client):
    base = client.completions.create(model="tiny-base", prompt="hello", max_tokens=2, temperature=0)
    assert base.model_extra["attribution"] is None  # nobody's data is in the base model
    opted_out = client.completions.create(
        model=ADAPTERS[0], prompt="hello", max_tokens=2, temperature=0, extra_body={"attribution": False}
    )
    assert opted_out.model_extra["attribution"] is None


def test_a_corrupt_attribution_index_loses_neither_answer_nor_charge(server, client, tmp_path):
    broken = tmp_path / "broken-index"
    shutil.copytree(server["adapters_dir"] / ADAPTERS[1], broken)
    (broken / "attribution_index.json").write_text("{ not json")
    load = httpx.post(
        server["url"] + "/v1/adapters/load",
        json={"model": "broken-index", "path": str(broken)},
        headers=_auth(ADMIN_TOKEN),
        timeout=30,
    )
    assert load.status_code == 200, load.text
    out = client.completions.create(model="broken-index", prompt="hello there", max_tokens=4, temperature=0)
    assert out.choices[0].text and out.usage.completion_tokens > 0
    assert out.model_extra["attribution"]["attributed"] is False
    assert out.model_extra["attribution"]["reason"].startswith("attribution failed:")


def test_unknown_chat_roles_and_malformed_content_are_400(client, server):
    for messages in (
        [{"role": "wizard", "content": "hi"}],
        [{"role": "user", "content": [{"type": "text", "text": 7}]}],
        [{"role": "user", "content": [{"no": "type"}]}],
    ):
        answer = httpx.post(
            server["url"] + "/v1/chat/completions", json={"model": ADAPTERS[0], "messages": messages}, headers=_auth()
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match="role"):
        client.chat.completions.create(model=ADAPTERS[0], messages=[{"role": "wizard", "content": "hi"}], max_tokens=1)
    # OpenAI's newer "developer" role is the system prompt.
    out = client.chat.completions.create(
        model=ADAPTERS[0],
        messages=[{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}],
        max_tokens=1,
    )
    assert out.usage.completion_tokens == 1


def test_nested_and_oversized_bodies_are_refused_in_openai_shape(server):
    deep = b'{"model": "tiny-base", "prompt": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    answer = httpx.post(
        server["url"] + "/v1/completions", content=deep, headers={**_auth(), "Content-Type": "application/json"}
    )
    assert answer.status_code == 400 and "deeper than" in answer.json()["error"]["message"]
    huge = {"model": "tiny-base", "prompt": "x" * (2 << 20)}
    answer = httpx.post(server["url"] + "/v1/completions", json=huge, headers=_auth())
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"
    assert httpx.get(server["url"] + "/health").json()["status"] == "ok"


def test_loading_a_model_is_free_and_needs_no_inference(server):
    engine: OpenLoRAEngine = server["engine"]
    generated = engine.metrics.requests.labels(ADAPTERS[7], "ok")._value.get()
    loaded = httpx.post(server["url"] + f"/v1/models/{ADAPTERS[7]}/load", headers=_auth())
    assert loaded.status_code == 200 and loaded.json()["loaded"] is True and loaded.json()["tier"] in ("cpu", "device")
    assert engine.metrics.requests.labels(ADAPTERS[7], "ok")._value.get() == generated  # no request was made
    described = httpx.get(server["url"] + f"/v1/models/{ADAPTERS[7]}", headers=_auth()).json()
    assert described["id"] == ADAPTERS[7] and described["tier"] in ("cpu", "device")
    missing = httpx.post(server["url"] + "/v1/models/no-such-model/load", headers=_auth())
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
