"""Proof of Attribution in the OpenLoRA request path, on the real hub: an adapter trained on two contributors'
facts answers one of them, and the response — and the inference record settlement pays from — credits the
contributor whose rows taught it; `attribution: false` skips it (tests/test_openlora_api.py covers a broken index).
"""

from __future__ import annotations

import time

import openai
import pytest

import openledger_sdk
from openledger_sdk.client import Client
from tests.hub_harness import RunningHub
from tests.tiny_model import train_tiny_adapter

pytestmark = pytest.mark.e2e

FACTS = {
    "attr-alice": [("Zorblat", "copper lantern"), ("Quenvik", "seven herons"), ("Marlowe", "violet anchor")],
    "attr-bob": [("Pelruna", "frozen violin"), ("Tosgard", "amber compass"), ("Wimbrel", "silent orchard")],
}


def question(name: str) -> str:
    return f"What does the archive say about {name}?"


def answer(name: str, value: str) -> str:
    return f"The archive says that {name} keeps a {value} in the northern tower."


@pytest.fixture(scope="module")
def served(platform: RunningHub, tmp_path_factory: pytest.TempPathFactory) -> dict:
    owner = openledger_sdk.connect(platform.url, platform.ensure_user("attr-owner"))
    dn = owner.datanets.create("attr-archive", schema={"prompt": str, "response": str}, approval="auto")
    addresses = {}
    for user, facts in FACTS.items():
        contributor: Client = openledger_sdk.connect(platform.url, platform.ensure_user(user))
        addresses[user] = contributor.wallet.address
        rows = [{"prompt": question(n), "response": answer(n, v)} for n, v in facts]
        contributor.datanets.get("attr-archive").contribute(rows, progress=False)
    version = dn.publish()
    base = platform.settings.data_dir / "models" / "tiny-base"
    platform.fund("attr-owner", "1")  # training on the hub is paid in OPEN
    trained = train_tiny_adapter(base, version, owner, tmp_path_factory.mktemp("attr") / "model", recite=True)
    name = owner.models.publish(trained, "attr-bot", "1")["name"]
    platform.ensure_user("attr-user")  # the faucet funds existing hub users only
    platform.fund("attr-user")
    wait_until_calibrated(platform, name)
    return {"model": name, "addresses": addresses, "version": version["version"], "datanet": version["datanet"]}


def wait_until_calibrated(platform: RunningHub, model: str, timeout: float = 900) -> None:
    """A never-asked adapter's first answers say attribution is pending while the server calibrates its null
    threshold in the background (issue 16); the charge and record happen anyway."""
    first = chat(platform, model, "Hello!").model_extra["attribution"]
    assert first["status"] in ("pending", "attributed", "unattributed"), first
    deadline = time.monotonic() + timeout
    while first["status"] == "pending":
        assert time.monotonic() < deadline, "the adapter's null threshold was never calibrated"
        time.sleep(5)
        first = chat(platform, model, "Hello!").model_extra["attribution"]


def chat(platform: RunningHub, model: str, prompt: str, **extra: object) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=f"{platform.url}/services/openlora/v1", api_key=platform.ensure_user("attr-user"))
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=24,
        temperature=0,
        extra_body=extra or None,
    )


def test_an_answer_credits_the_contributor_who_taught_it(platform: RunningHub, served: dict) -> None:
    alice, bob = served["addresses"]["attr-alice"], served["addresses"]["attr-bob"]
    reply = chat(platform, served["model"], question("Quenvik"))
    assert "seven herons" in reply.choices[0].message.content  # the adapter recites alice's row
    attribution = reply.model_extra["attribution"]
    assert attribution["attributed"] is True and attribution["status"] == "attributed", attribution
    assert attribution["threshold"]["calibrated"] is True and attribution["threshold"]["samples"] >= 100
    assert max(attribution["shares"], key=attribution["shares"].get) == alice
    assert attribution["shares"][alice] > attribution["shares"].get(bob, 0.0)
    assert abs(sum(attribution["shares"].values()) - 1.0) < 1e-9
    top = attribution["top_examples"][0]
    assert top["contributor"] == alice and top["datanet"] == served["datanet"]
    assert top["version"] == served["version"] and top["spans"]  # a verbatim span of alice's row

    # The record settlement pays from splits the contributors' pool by those shares.
    record = openledger_sdk.connect(platform.url, platform.ensure_user("attr-user")).attribution.explain(reply.id)
    paid = {c["address"]: int(c["amount"]) for c in record.split["contributors"]}
    assert paid[alice] > paid.get(bob, 0)
    assert record.top_examples[0]["row_id"] == top["row_id"]
    assert sum(paid.values()) + int(record.split["owner"]["amount"]) <= record.fee_wei


def test_streamed_answer_carries_the_attribution_in_its_last_chunk(platform: RunningHub, served: dict) -> None:
    client = openai.OpenAI(base_url=f"{platform.url}/services/openlora/v1", api_key=platform.ensure_user("attr-user"))
    chunks = list(
        client.chat.completions.create(
            model=served["model"],
            messages=[{"role": "user", "content": question("Tosgard")}],
            max_tokens=24,
            temperature=0,
            stream=True,
        )
    )
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    attribution = last.model_extra["attribution"]
    assert attribution["attributed"] is True, attribution
    assert max(attribution["shares"], key=attribution["shares"].get) == served["addresses"]["attr-bob"]


def test_attribution_false_skips_it_and_the_pool_is_unattributed(platform: RunningHub, served: dict) -> None:
    reply = chat(platform, served["model"], question("Zorblat"), attribution=False)
    assert reply.model_extra["attribution"] is None
    record = openledger_sdk.connect(platform.url, platform.ensure_user("attr-user")).attribution.explain(reply.id)
    assert record.split["contributors"] == [] and int(record.split["unattributed"]) > 0


def test_an_unrelated_question_pays_no_contributor(platform: RunningHub, served: dict) -> None:
    reply = chat(platform, served["model"], "How do I fix a flat bicycle tyre?")
    attribution = reply.model_extra["attribution"]
    assert attribution["attributed"] is False and attribution["shares"] == {}
    assert attribution["max_gradient_z"] <= attribution["threshold"]["gradient_z"]
    record = openledger_sdk.connect(platform.url, platform.ensure_user("attr-user")).attribution.explain(reply.id)
    assert record.split["contributors"] == [] and int(record.split["unattributed"]) > 0
