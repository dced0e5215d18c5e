"""Hostile-but-authorised input against the real hub (proxy → services → anvil): bounded bodies, idempotent
writes, input rules, JSON errors while a service is down, and the schemathesis fuzz of every service (whose
totals go to bench/results/security.json).

This module starts its own hub: a spooled upload left by a "crashed" platform is planted before the start.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

import openledger_sdk
from bench.fuzz_services import fuzz_all, merge_result, result_values
from tests.hub_harness import RunningHub, start_platform, stop_platform

pytestmark = pytest.mark.e2e
API = "/services/platform/api"
DEEP = b"[" * 100_000 + b"]" * 100_000  # the body that killed the platform (segfault) before
FUZZ_EXAMPLES = int(os.environ.get("OPENLEDGER_FUZZ_EXAMPLES", "20"))  # valid + invalid each: ~1,500 cases, ~30 s


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningHub, Path]]:
    directory = tmp_path_factory.mktemp("hardening")
    uploads = directory / "data" / "tmp" / "uploads"
    uploads.mkdir(parents=True)
    stale = uploads / "upload-left-by-a-crash"
    stale.write_bytes(b"half an upload")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    running, process = start_platform(directory)
    try:
        # The spooled file as the platform sees it (a multi-user hub lives in a folder of its own).
        yield running, running.settings.data_dir / "tmp" / "uploads" / stale.name
    finally:
        stop_platform(running.settings, process)


@pytest.fixture(scope="module")
def platform_hub(hub: tuple[RunningHub, Path]) -> RunningHub:
    return hub[0]


@pytest.fixture(scope="module")
def mallory(platform_hub: RunningHub) -> str:
    return platform_hub.ensure_user("mallory")


def _service_pid(port: int) -> int:
    for connection in psutil.net_connections("tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            return connection.pid
    raise LookupError(f"nothing listens on {port}")


def test_spooled_uploads_of_dead_requests_are_removed_at_start(hub: tuple[RunningHub, Path]) -> None:
    assert not hub[1].exists()


def test_deep_json_is_refused_and_the_platform_lives(platform_hub: RunningHub, mallory: str) -> None:
    ol = openledger_sdk.connect(platform_hub.url, mallory)
    ol.datanets.create("deep-nest", summary="for nesting", approval="auto")
    pid = _service_pid(platform_hub.settings.services.platform_port)
    with platform_hub.as_token(mallory) as client:
        for path in (f"{API}/datanets/deep-nest/rows", f"{API}/wallet/link", f"{API}/datanets"):
            answer = client.post(path, content=b'{"rows": ' + DEEP + b"}", headers={"Content-Type": "application/json"})
            assert answer.status_code == 400, (path, answer.text[:200])
            assert "deeper than" in answer.json()["detail"]
        assert client.get("/services/platform/health").json()["status"] == "ok"
    assert _service_pid(platform_hub.settings.services.platform_port) == pid  # the same process: it never died
    assert "exited with status" not in platform_hub.log_file.read_text()


def test_bodies_over_the_limit_get_413_early(platform_hub: RunningHub, mallory: str) -> None:
    for path in (f"{API}/wallet/link", "/services/chain/", "/services/openlora/v1/chat/completions"):
        platform_hub.refused_before_body(path, mallory, "application/json", 100 * 1024 * 1024, b'{"a": ')
    with platform_hub.as_token(mallory) as client:
        big = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": ["x" * (32 << 20)]}
        answer = client.post("/services/chain/", json=big)  # 32 MiB: was fully parsed, then a 500
        assert answer.status_code == 413 and "limit" in answer.json()["detail"]

        def chunked() -> Iterator[bytes]:
            for _ in range(3 * 1024):
                yield b" " * 1024

        answer = client.post(f"{API}/wallet/link", content=chunked(), headers={"Content-Type": "application/json"})
        assert answer.status_code == 413


def test_a_retried_upload_and_publish_return_the_first_answer(platform_hub: RunningHub, mallory: str) -> None:
    ol = openledger_sdk.connect(platform_hub.url, mallory)
    ol.datanets.create("retry-safe", summary="retries", approval="auto")
    rows = {"rows": [{"text": f"retried row {uuid.uuid4().hex}"} for _ in range(3)]}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    with platform_hub.as_token(mallory) as client:
        first = client.post(f"{API}/datanets/retry-safe/rows", json=rows, headers=key)
        again = client.post(f"{API}/datanets/retry-safe/rows", json=rows, headers=key)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
        # Without the key the same rows are (rightly) duplicates: the key is what makes the retry safe.
        assert client.post(f"{API}/datanets/retry-safe/rows", json=rows).status_code == 422
        upload = {"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/octet-stream"}
        csv = b"text\nfile row one for retry\nfile row two for retry\n"
        params = {"filename": "rows.csv"}
        first_file = client.post(f"{API}/datanets/retry-safe/files", params=params, content=csv, headers=upload)
        again_file = client.post(f"{API}/datanets/retry-safe/files", params=params, content=csv, headers=upload)
        assert first_file.status_code == 201 and again_file.json() == first_file.json()
        publish = {"Idempotency-Key": uuid.uuid4().hex}
        version = client.post(f"{API}/datanets/retry-safe/versions", headers=publish)
        assert version.status_code == 201
        assert client.post(f"{API}/datanets/retry-safe/versions", headers=publish).json() == version.json()
        assert len(client.get(f"{API}/datanets/retry-safe/submissions").json()) == 2
        assert len(client.get(f"{API}/datanets/retry-safe/versions").json()) == 1
        bad = client.post(f"{API}/datanets/retry-safe/rows", json=rows, headers={"Idempotency-Key": "no spaces"})
        assert bad.status_code == 400


def test_the_faucet_mints_once_per_key_and_only_to_real_users(platform_hub: RunningHub, mallory: str) -> None:
    faucet = f"{API}/admin/faucet"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    with platform_hub.admin() as admin:
        for _ in range(2):
            answer = admin.post(faucet, json={"user": "mallory", "open": "7", "eth": "1"}, headers=key)
            assert answer.status_code == 200, answer.text
    with platform_hub.as_token(mallory) as client:
        assert client.get(f"{API}/wallet").json()["balances"]["OPEN"] == str(7 * 10**18)  # minted once
    refusals = [
        ({"user": "nobody-" + uuid.uuid4().hex[:8], "open": "1"}, 404, "no hub user"),
        ({"user": "mallory", "open": "1_000"}, 409, "plain decimal"),
        ({"user": "mallory", "open": "1e3"}, 409, "plain decimal"),
        ({"user": "mallory", "open": "0.0000000000000000001"}, 409, "finer than one base unit"),
        ({"user": "mallory", "open": "-5"}, 409, "plain decimal"),
        ({"user": "mallory", "open": "0", "eth": "0"}, 409, "nothing to send"),
        ({"address": "0x" + "0" * 40, "open": "1"}, 409, "zero address"),
    ]
    with platform_hub.admin() as admin:
        for body, status, words in refusals:
            answer = admin.post(faucet, json=body)
            assert answer.status_code == status and words in answer.json()["detail"], (body, answer.text)
    with platform_hub.as_token(mallory) as client:
        assert client.get(f"{API}/wallet").json()["balances"]["OPEN"] == str(7 * 10**18)  # nothing changed


def test_text_fields_refuse_control_and_bidi_characters(platform_hub: RunningHub, mallory: str) -> None:
    with platform_hub.as_token(mallory) as client:
        for summary in ("nul\x00", "bell\x07", "\x1b[31mred\x1b[0m", "invoice\u202efdp.exe"):
            answer = client.post(f"{API}/datanets", json={"name": "sneaky-text", "summary": summary})
            assert answer.status_code == 422 and "control or bidi-override" in answer.text
        assert client.get(f"{API}/datanets/sneaky-text").status_code == 404  # nothing was created


def test_metrics_need_the_read_metrics_scope(platform_hub: RunningHub, mallory: str) -> None:
    for service in ("platform", "openlora", "chain"):
        assert httpx.get(f"{platform_hub.url}/services/{service}/metrics").status_code == 401
        with platform_hub.as_token(mallory) as client:
            answer = client.get(f"/services/{service}/metrics")
            assert answer.status_code == 403 and "read:metrics" in answer.text
        with platform_hub.admin() as admin:
            assert admin.get(f"/services/{service}/metrics").status_code == 200


def test_fuzzing_every_operation_finds_no_server_error(platform_hub: RunningHub, tmp_path: Path) -> None:
    summary = fuzz_all(platform_hub, FUZZ_EXAMPLES)
    # The committed results come from `python -m bench.fuzz_services`; the suite must not rewrite a tracked file.
    written = merge_result(tmp_path / "security.json", result_values(summary))
    assert written["fuzz_server_errors"] == 0
    assert summary["fuzz_operations"] >= 40 and summary["fuzz_cases"] >= summary["fuzz_operations"]
    assert summary["fuzz_server_errors"] == 0, summary["fuzz_failures"]
    assert summary["fuzz_services_alive"], summary["fuzz_by_service"]


def test_errors_while_a_service_is_down_are_json(platform_hub: RunningHub, mallory: str) -> None:
    """Last: it stops the OpenLoRA service (the hub restarts it)."""
    port = platform_hub.settings.services.openlora_port
    psutil.Process(_service_pid(port)).kill()
    with platform_hub.as_token(mallory) as client:
        deadline = time.monotonic() + 20
        while (answer := client.get("/services/openlora/v1/models")).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert answer.status_code in (502, 503) and answer.headers["content-type"].startswith("application/json")
        assert "openlora service is not answering" in answer.json()["error"]["message"]
