"""End to end through the real hub: REST user creation, spawn, the OpenLedger kernel, services, chain."""

from __future__ import annotations

import httpx
import openai
import pytest

from openledger_sdk.hardware import native_bfloat16
from tests.hub_harness import RunningHub, run_in_kernel

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def alice(platform: RunningHub) -> str:
    return platform.ensure_user("alice")


@pytest.fixture(scope="module")
def bob(platform: RunningHub) -> str:
    return platform.ensure_user("bob")


@pytest.fixture(scope="module")
def alice_server(platform: RunningHub, alice: str) -> float:
    seconds = platform.spawn("alice")
    print(f"spawn-to-ready: {seconds:.1f} s")
    return seconds


def test_kernel_whoami_returns_the_spawning_user(platform: RunningHub, alice: str, alice_server: float) -> None:
    output = run_in_kernel(platform, "alice", alice, "print(ol.whoami()['name'])")
    assert output.strip() == "alice"


def test_kernel_sees_its_gpu_or_cpu_assignment(platform: RunningHub, alice: str, alice_server: float) -> None:
    # No GPU on the test machines: the spawner falls back to CPU and says so in the env.
    output = run_in_kernel(platform, "alice", alice, "import os; print(repr(os.environ.get('CUDA_VISIBLE_DEVICES')))")
    assert output.strip() == "''"


def test_templates_are_seeded_into_the_new_home(platform: RunningHub, alice_server: float) -> None:
    assert (platform.home("alice") / "00-welcome.ipynb").exists()


def test_platform_identifies_each_token(platform: RunningHub, alice: str, bob: str) -> None:
    with platform.as_token(alice) as client:
        me = client.get("/services/platform/api/me")
    assert me.status_code == 200
    assert me.json()["name"] == "alice"
    with platform.as_token(bob) as client:
        assert client.get("/services/platform/api/me").json()["name"] == "bob"


def test_second_user_cannot_read_first_users_data(platform: RunningHub, alice: str, bob: str) -> None:
    with platform.as_token(bob) as client:
        answer = client.get("/services/platform/api/users/alice")
    assert answer.status_code == 403
    assert "bob" in answer.json()["detail"]
    with platform.as_token(alice) as client:
        assert client.get("/services/platform/api/users/alice").json()["name"] == "alice"


def test_admin_may_read_any_user(platform: RunningHub, alice: str) -> None:
    with platform.admin() as admin:
        answer = admin.get("/services/platform/api/users/alice")
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "alice"


@pytest.mark.parametrize("header", [None, "token not-a-real-token"])
def test_platform_refuses_missing_or_bad_tokens(platform: RunningHub, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    answer = httpx.get(f"{platform.url}/services/platform/api/me", headers=headers)
    assert answer.status_code == 401
    assert "token" in answer.json()["detail"]


def test_chain_answers_chain_id_through_the_service(platform: RunningHub, alice: str) -> None:
    with platform.as_token(alice) as client:
        answer = client.post("/services/chain/", json={"jsonrpc": "2.0", "id": 7, "method": "eth_chainId"})
    assert answer.status_code == 200
    assert int(answer.json()["result"], 16) == platform.settings.chain.chain_id


def test_chain_refuses_node_control_to_users_but_not_admins(platform: RunningHub, alice: str) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "anvil_setBalance",
        "params": ["0x000000000000000000000000000000000000dEaD", "0x1"],
    }
    with platform.as_token(alice) as client:
        refused = client.post("/services/chain/", json=call).json()
    assert "admins only" in refused["error"]["message"]
    with platform.admin() as admin:
        assert "error" not in admin.post("/services/chain/", json=call).json()


def test_services_report_health_and_metrics(platform: RunningHub) -> None:
    platform_health = httpx.get(f"{platform.url}/services/platform/health").json()
    assert platform_health["status"] == "ok"
    chain_health = httpx.get(f"{platform.url}/services/chain/health").json()
    assert chain_health["chain_id"] == platform.settings.chain.chain_id
    metrics = httpx.get(f"{platform.url}/services/platform/metrics").text
    assert "http_requests_total" in metrics


def test_openlora_serves_the_base_model_to_the_openai_client(platform: RunningHub, alice: str) -> None:
    client = openai.OpenAI(base_url=f"{platform.url}/services/openlora/v1", api_key=alice)
    models = [model.id for model in client.models.list().data]
    assert "tiny-base" in models
    answer = client.chat.completions.create(
        model="tiny-base", messages=[{"role": "user", "content": "hello"}], max_tokens=5, temperature=0
    )
    assert answer.usage.completion_tokens <= 5 and answer.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.NotFoundError, match="/v1/models"):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    health = httpx.get(f"{platform.url}/services/openlora/health").json()
    # Settings' default: CPU, in bf16 where this CPU computes it natively (AMX / AVX512-BF16), else float32.
    assert health["status"] == "ok" and health["device"] == "cpu"
    assert health["dtype"] == ("bfloat16" if native_bfloat16("cpu") else "float32")


def test_instructor_manages_students_servers_only(platform: RunningHub) -> None:
    carol = platform.ensure_user("carol")
    platform.ensure_user("dave")
    platform.ensure_user("erin")
    with platform.admin() as admin:
        admin.post("/hub/api/groups/instructors/users", json={"users": ["carol"]}).raise_for_status()
        admin.post("/hub/api/groups/students/users", json={"users": ["dave"]}).raise_for_status()
    with platform.as_token(carol) as instructor:
        assert instructor.get("/hub/api/users/dave").status_code == 200
        assert instructor.get("/hub/api/users/erin").status_code in (403, 404)
        # The hub answers 404 rather than 403 so as not to reveal which users exist.
        assert instructor.post("/hub/api/users/erin/server").status_code in (403, 404)
        assert instructor.post("/hub/api/users/dave/server").status_code in (201, 202)
    with platform.admin() as admin:
        assert not admin.get("/hub/api/users/erin").json()["servers"]
    platform.stop_server("dave")


def test_openledger_magic_in_the_kernel(platform: RunningHub, alice: str, alice_server: float) -> None:
    output = run_in_kernel(platform, "alice", alice, "%openledger whoami")
    assert output.strip().startswith("alice; groups:")
    with pytest.raises(RuntimeError, match="unknown command 'fly'"):
        run_in_kernel(platform, "alice", alice, "%openledger fly")


def test_datanet_cell_magic_contributes_the_cell_rows(platform: RunningHub, alice: str, alice_server: float) -> None:
    setup = "ol.datanets.create('magic-qa', schema={'prompt': 'str', 'response': 'str'}, summary='magic test')"
    run_in_kernel(platform, "alice", alice, setup)
    cell = (
        "%%datanet contribute magic-qa\n"
        '{"prompt": "What does the cell magic do?", "response": "It turns each line into a row."}\n'
        '{"prompt": "Where do the rows go?", "response": "Into the datanet named on the first line."}\n'
    )
    run_in_kernel(platform, "alice", alice, cell)
    output = run_in_kernel(platform, "alice", alice, "print(len(ol.datanets.get('magic-qa').submissions()))")
    assert output.strip() == "1"
    with pytest.raises(RuntimeError, match="usage: %%datanet contribute NAME"):
        run_in_kernel(platform, "alice", alice, "%%datanet add magic-qa\nx\n")
