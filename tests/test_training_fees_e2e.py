"""Training paid in OPEN (issue 18, item 4) through the real hub: proxy → platform → relay → anvil, a tiny model.

`finetune()` runs in this test process with a user's hub token (as a kernel does: it holds only that token); the
platform counts the run's tokens itself, holds the maximum cost, charges it when the run ends and pays the protocol.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlmodel import Session

import openledger_sdk
from hub.db import make_engine
from hub.rewards.models import utcnow
from hub.rewards.training_models import TrainingRun
from hub.workshop import steps
from hub.workshop.hub_api import HubAPI
from openledger_sdk.modelfactory import LoraSettings, finetune
from openledger_sdk.modelfactory.config import TrainConfig
from openledger_sdk.modelfactory.training_fee import TrainingPaymentError
from tests.hub_harness import RunningHub, run_in_kernel
from tests.tiny_model import shared_tiny_model

pytestmark = pytest.mark.e2e
torch.set_num_threads(2)

RUNS = "/services/platform/api/training/runs"
SUFFIX = uuid.uuid4().hex[:6]
PRICE_WEI = 10**13  # the default [rewards] training_price, "0.00001" OPEN per token
TRAINING = {"lora": LoraSettings(r=2, alpha=4), "epochs": 2, "batch_size": 2, "max_len": 48, "eval_split": 0}


@pytest.fixture(scope="module")
def base(platform: RunningHub) -> Path:
    return platform.settings.data_dir / "models" / "tiny-base"


@pytest.fixture(scope="module")
def users(platform: RunningHub) -> dict[str, str]:
    tokens = {name: platform.ensure_user(f"{name}-{SUFFIX}") for name in ("tf-alice", "tf-bob")}
    platform.fund(f"tf-alice-{SUFFIX}", "1")  # bob gets nothing
    return tokens


@pytest.fixture(scope="module")
def alice(platform: RunningHub, users: dict[str, str]) -> openledger_sdk.Client:
    return openledger_sdk.connect(platform.url, users["tf-alice"])


@pytest.fixture(scope="module")
def datanet(alice: openledger_sdk.Client) -> dict[str, Any]:
    dn = alice.datanets.create(f"tf-facts-{SUFFIX}", schema={"prompt": str, "response": str}, approval="auto")
    dn.contribute([{"prompt": f"Where is tower {i}?", "response": f"Tower {i} is on hill {i * 7}."} for i in range(6)])
    return dn.publish()


def run_body(base: Path, datanet: dict, **changes: Any) -> dict[str, Any]:
    config = TrainConfig(base=str(base), lora=TRAINING["lora"], epochs=2, batch_size=2, max_len=48, eval_split=0)
    data = config.to_dict() | changes
    return {"run_id": uuid.uuid4().hex, "datanet": datanet["datanet"], "version": datanet["version"], "config": data}


def open_balance(client: openledger_sdk.Client) -> int:
    return int(client.wallet.info()["balances"]["OPEN"])


def test_a_run_is_paid_at_the_platforms_count_and_the_model_registers_with_it(
    platform: RunningHub, alice: openledger_sdk.Client, datanet: dict, base: Path, tmp_path: Path
) -> None:
    before = open_balance(alice)
    model = finetune(str(base), datanet=datanet["datanet"], version=datanet["version"], client=alice,
                     output_dir=tmp_path / "paid", progress=False, **TRAINING)  # fmt: skip
    charge = model.manifest["training_charge"]
    # The platform's own token count equals what the loop trained; the price is the setting's.
    assert charge["paid"] and charge["status"] == "paid" and charge["outcome"] == "complete"
    assert charge["tokens"] == model.manifest["training"]["tokens"] > 0
    assert int(charge["amount_wei"]) == charge["tokens"] * PRICE_WEI
    assert charge["tx_hash"] and charge["paid_to"]
    assert open_balance(alice) == before - int(charge["amount_wei"])  # charged once, the rest of the hold released

    published = alice.models.publish(model, f"tf-paid-{SUFFIX}", "1")
    assert published["training"] == {
        "paid": True, "run_id": charge["run_id"], "tokens": charge["tokens"], "amount_wei": charge["amount_wei"]
    }  # fmt: skip
    assert published["manifest"]["training_charge"]["run_id"] == charge["run_id"]  # in the registered hash
    # Reuse: the same paid run cannot back a second model.
    with pytest.raises(openledger_sdk.OpenLedgerError, match="already backs model"):
        alice.models.publish(model, f"tf-again-{SUFFIX}", "1")


def test_a_stopped_run_pays_only_the_steps_it_did(
    alice: openledger_sdk.Client, datanet: dict, base: Path, tmp_path: Path
) -> None:
    stop = threading.Event()

    def stop_after_first_step(event: str, *args: Any) -> None:
        if event == "on_step" and args[0].step == 1:
            stop.set()

    before = open_balance(alice)
    source = {"datanet": datanet["datanet"], "version": datanet["version"], "client": alice}
    model = finetune(str(base), **source, stop=stop, callbacks=[stop_after_first_step],
                     output_dir=tmp_path / "stopped", progress=False, **TRAINING)  # fmt: skip
    charge = model.manifest["training_charge"]
    run = alice.request("GET", "platform", f"api/training/runs/{charge['run_id']}")
    assert charge["outcome"] == "stopped" and charge["steps"] == 1
    assert 0 < int(charge["amount_wei"]) < int(run["reserved_wei"])  # partial: one step of the planned ones
    assert open_balance(alice) == before - int(charge["amount_wei"])


def test_a_wallet_that_cannot_cover_the_run_is_refused_before_training(
    platform: RunningHub, users: dict[str, str], datanet: dict, base: Path, tmp_path: Path
) -> None:
    bob = openledger_sdk.connect(platform.url, users["tf-bob"])
    with pytest.raises(TrainingPaymentError) as refused:
        finetune(str(base), datanet=datanet["datanet"], version=datanet["version"], client=bob,
                 output_dir=tmp_path / "refused", progress=False, **TRAINING)  # fmt: skip
    message = str(refused.value)
    assert "not enough OPEN to train" in message and "OPEN/token" in message
    assert "it holds 0 OPEN" in message and "Get OPEN" in message
    assert not (tmp_path / "refused").exists()  # nothing ran
    assert bob.request("GET", "platform", "api/training/runs") == []  # nothing held or charged


def test_abuse_another_wallet_a_smaller_report_a_reused_run_and_bad_numbers(
    platform: RunningHub, users: dict[str, str], alice: openledger_sdk.Client, datanet: dict, base: Path
) -> None:
    before = open_balance(alice)
    with platform.as_token(users["tf-alice"]) as as_alice, platform.as_token(users["tf-bob"]) as as_bob:
        body = run_body(base, datanet)
        # Bob cannot name a payer: the caller's own wallet always pays.
        assert as_bob.post(RUNS, json=body | {"payer": f"tf-alice-{SUFFIX}"}).status_code == 422
        reserved = as_alice.post(RUNS, json=body)
        assert reserved.status_code == 201, reserved.text
        run = reserved.json()
        assert run["reserved_wei"] == str(run["planned_tokens"] * PRICE_WEI)
        assert as_alice.post(RUNS, json=body).status_code == 200  # a retry finds the same hold, not a second one
        other = body | {"config": body["config"] | {"seed": 9}}
        assert as_alice.post(RUNS, json=other).status_code == 409  # the id belongs to another request
        finish = f"{RUNS}/{run['run_id']}/finish"
        # Bob cannot end (and so cannot settle the price of) alice's run.
        assert as_bob.post(finish, json={"outcome": "stopped", "steps": 0}).status_code == 404
        # A smaller cost than was trained: "complete" with fewer steps, more steps than planned, negative numbers.
        for report in ({"outcome": "complete", "steps": 1}, {"outcome": "stopped", "steps": run["planned_steps"] + 1},
                       {"outcome": "stopped", "steps": -1}, {"outcome": "done", "steps": 1}):  # fmt: skip
            answer = as_alice.post(finish, json=report)
            assert answer.status_code in (400, 422), (report, answer.text)
        assert open_balance(alice) == before  # nothing charged by bad reports
        # A complete run is charged the platform's count, whatever token count the kernel claims.
        done = as_alice.post(finish, json={"outcome": "complete", "steps": run["planned_steps"], "tokens": 1})
        assert done.status_code == 200, done.text
        assert done.json()["tokens"] == run["planned_tokens"] and done.json()["status"] == "paid"
        # Reuse: the same report again is the same charge; another report or a new reservation on it is refused.
        again = as_alice.post(finish, json={"outcome": "complete", "steps": run["planned_steps"], "tokens": 1})
        assert again.status_code == 200 and again.json()["amount_wei"] == done.json()["amount_wei"]
        assert as_alice.post(finish, json={"outcome": "stopped", "steps": 0}).status_code == 409
        assert "a run id pays for one run" in as_alice.post(RUNS, json=body).text
        assert open_balance(alice) == before - int(done.json()["amount_wei"])  # charged exactly once
        # Bad numbers: clear errors, nothing held.
        for config, expected in (
            ({"epochs": -1}, "epochs must be an integer >= 1"),
            ({"epochs": 10**9}, "more than 1000"),
            ({"max_len": 10**12, "epochs": "2"}, "epochs must be an integer"),
            ({"nonsense": 1}, "config:"),
        ):
            answer = as_alice.post(RUNS, json=run_body(base, datanet, **config))
            assert answer.status_code == 400 and expected in answer.json()["detail"], answer.text
        # A base model the platform does not have: the refusal names the ones it has.
        unknown = as_alice.post(RUNS, json=run_body(base.with_name("no-such-base"), datanet))
        assert unknown.status_code == 422 and "no base model 'no-such-base'" in unknown.json()["detail"], unknown.text
        assert "uses one of its base models: " in unknown.json()["detail"] and base.name in unknown.json()["detail"]
        # More tokens than the wallet holds: the refusal says what it costs and what the wallet can spend.
        huge = as_alice.post(RUNS, json=run_body(base, datanet, epochs=1000))
        assert huge.status_code == 402 and "can spend" in huge.json()["detail"], huge.text
        held = [r for r in as_alice.get(RUNS).json() if r["status"] == "reserved"]
        assert held == []


def test_a_run_that_never_reports_is_charged_in_full_when_its_hold_expires(
    platform: RunningHub, users: dict[str, str], alice: openledger_sdk.Client, datanet: dict, base: Path
) -> None:
    with platform.as_token(users["tf-alice"]) as as_alice:
        run = as_alice.post(RUNS, json=run_body(base, datanet)).json()
        before = open_balance(alice)
        # The kernel dies and never reports; a day passes (the hold's expiry moved into the past: nothing else changes).
        with platform.as_service_account():
            engine = make_engine(platform.settings.database_url)
            with Session(engine) as session:
                row = session.get(TrainingRun, run["run_id"])
                row.expires_at = utcnow() - timedelta(seconds=1)
                session.add(row)
                session.commit()
            engine.dispose()
        deadline = time.monotonic() + 60
        while (view := as_alice.get(f"{RUNS}/{run['run_id']}").json())["status"] in ("reserved", "charging"):
            assert time.monotonic() < deadline, view
            time.sleep(0.5)
        assert view["status"] == "paid" and view["outcome"] == "expired", view
        assert view["amount_wei"] == run["reserved_wei"] and "charged in full" in view["reason"]
        assert open_balance(alice) == before - int(run["reserved_wei"])
        # A late report changes nothing.
        late = as_alice.post(f"{RUNS}/{run['run_id']}/finish", json={"outcome": "stopped", "steps": 0})
        assert late.status_code == 409, late.text


def test_workshop_funding_covers_training_the_class_model(
    platform: RunningHub, alice: openledger_sdk.Client, base: Path, tmp_path: Path
) -> None:
    workshop = f"tfw{SUFFIX}"
    class_datanet = alice.datanets.create(
        steps.datanet_name(workshop), schema={"prompt": str, "response": str}, approval="auto"
    )
    class_datanet.contribute(steps.starter_rows(), progress=False)
    version = class_datanet.publish()
    student = f"tf-student-{SUFFIX}"
    token = platform.ensure_user(student)
    api = HubAPI(platform.url, platform.secrets.admin_api_token)
    cost = steps.class_training_cost(api, workshop)
    assert cost > 0
    assert steps.fund(api, [student], "0", workshop=workshop) == {student: "ok"}
    me = openledger_sdk.connect(platform.url, token)
    assert Decimal(open_balance(me)) == cost * 10**18  # nothing but the class training
    settings = {**steps.CLASS_TRAINING, "lora": LoraSettings(**steps.CLASS_TRAINING["lora"])}
    model = finetune(str(base), datanet=version["datanet"], version=version["version"], client=me,
                     output_dir=tmp_path / "class", progress=False, index=False, **settings)  # fmt: skip
    charge = model.manifest["training_charge"]
    assert charge["paid"] and Decimal(charge["amount"]) * steps.CLASS_RUNS_FUNDED == cost


KERNEL_RUN = """
from openledger_sdk.modelfactory import finetune
from openledger_sdk.modelfactory.training_fee import TrainingPaymentError
rows = [{"prompt": f"q{i}?", "response": f"answer {i}"} for i in range(4)]
try:
    model = finetune(BASE, rows=rows, epochs=1, batch_size=2, max_len=32, eval_split=0, index=False,
                     progress=False)
    print("PAID", model.manifest["training_charge"]["paid"], model.manifest["training_charge"]["amount_wei"])
except TrainingPaymentError as err:
    print("REFUSED", err)
"""


def test_in_a_hub_kernel_rows_passed_in_are_paid_from_the_users_wallet(platform: RunningHub) -> None:
    # The kernel holds only its hub token; finetune() there pays (rows are sent for the platform to count).
    base = platform.install_base_model(shared_tiny_model(), f"tf-tiny-{SUFFIX}")
    student = f"tf-kernel-{SUFFIX}"
    token = platform.ensure_user(student)
    platform.spawn(student)
    refused = run_in_kernel(platform, student, token, KERNEL_RUN.replace("BASE", repr(str(base))), timeout=300)
    assert refused.startswith("REFUSED not enough OPEN to train") and "it holds 0 OPEN" in refused, refused
    platform.fund(student, "1")
    paid = run_in_kernel(platform, student, token, KERNEL_RUN.replace("BASE", repr(str(base))), timeout=300)
    charged = re.search(r"^PAID True (\d+)$", paid, re.MULTILINE)  # (transformers may warn on stderr first)
    assert charged and int(charged.group(1)) > 0, paid
    platform.stop_server(student)


def test_outside_the_hub_training_is_free_and_the_manifest_says_so(base: Path, tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(4)]
    model = finetune(str(base), rows=rows, output_dir=tmp_path / "free", progress=False, index=False, **TRAINING)
    unpaid = {"paid": False, "reason": "trained outside a hub: no platform to pay (free)"}
    assert model.manifest["training_charge"] == unpaid


def test_the_genesis_training_price_is_the_setting(platform: RunningHub) -> None:
    # What a run is charged once holders vote another price: tests/test_governance_e2e.py.
    assert platform.settings.rewards.training_price == Decimal("0.00001")
    assert platform.settings.rewards.training_price_wei == PRICE_WEI
