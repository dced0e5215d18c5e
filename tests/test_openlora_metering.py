"""A published model served by the hub's OpenLoRA service: the official openai client chats with it, the
response carries the price, and the inference is recorded for settlement (fee, payer, model owner)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import openai
import pytest

import openledger_sdk
from hub.rewards.split import inference_fee
from tests.hub_harness import RunningHub
from tests.tiny_model import train_tiny_adapter

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def published(platform: RunningHub, tmp_path_factory: pytest.TempPathFactory) -> str:
    owner = openledger_sdk.connect(platform.url, platform.ensure_user("lora-owner"))
    dn = owner.datanets.create("lora-served-qa", schema={"prompt": str, "response": str}, approval="auto")
    dn.contribute([{"prompt": f"Served fact {i}?", "response": f"Served fact {i} is true."} for i in range(8)])
    version = dn.publish()
    base = platform.settings.data_dir / "models" / "tiny-base"
    platform.fund("lora-owner", "1")  # training on the hub is paid in OPEN
    trained = train_tiny_adapter(base, version, owner, tmp_path_factory.mktemp("served") / "model")
    for asker in ("lora-user", "lora-streamer", "lora-sdk"):
        platform.ensure_user(asker)  # the faucet funds existing hub users only
        platform.fund(asker)
    return owner.models.publish(trained, "served-bot", "0.25")["name"]


def test_chat_with_a_published_model_is_priced_and_recorded(platform: RunningHub, published: str) -> None:
    token = platform.ensure_user("lora-user")
    client = openai.OpenAI(base_url=f"{platform.url}/services/openlora/v1", api_key=token)
    assert published in [model.id for model in client.models.list().data]
    answer = client.chat.completions.create(
        model=published, messages=[{"role": "user", "content": "Served fact 1?"}], max_tokens=6, temperature=0
    )
    price = Decimal(str(answer.model_extra["price"]))
    tokens = answer.usage.total_tokens
    # 0.25 OPEN per 1k tokens plus the platform fee (0.001 OPEN by default).
    assert price == Decimal("0.25") * tokens / 1000 + Decimal("0.001")

    record = openledger_sdk.connect(platform.url, token).attribution.explain(answer.id).record
    assert record["model"] == published and record["payer"] == "lora-user" and record["tokens"] == tokens
    assert Decimal(record["fee"]) == price * 10**18  # base units
    assert record["charge_status"] == "open"  # charged when the next epoch is settled


def test_streamed_chat_is_charged_once(platform: RunningHub, published: str) -> None:
    token = platform.ensure_user("lora-streamer")
    client = openai.OpenAI(base_url=f"{platform.url}/services/openlora/v1", api_key=token)
    chunks = list(
        client.chat.completions.create(
            model=published, messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
        )
    )
    finals = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert len(finals) == 1 and Decimal(str(finals[0].model_extra["price"])) > 0
    assert (
        openledger_sdk.connect(platform.url, token).attribution.explain(chunks[0].id).record["payer"] == "lora-streamer"
    )


def test_sdk_deploys_chats_and_streams(platform: RunningHub, published: str) -> None:
    ol = openledger_sdk.connect(platform.url, platform.ensure_user("lora-sdk"))
    recorded = _revenue_requests(platform, published)
    assert ol.openlora.deploy(published) == published
    # Deploying is free: no inference record, nothing charged, nothing in the owner's revenue.
    assert ol.rewards.records()["total"] == 0
    assert _revenue_requests(platform, published) == recorded
    reply = ol.openlora.chat(published, [{"role": "user", "content": "Served fact 2?"}], max_tokens=4)
    assert reply["usage"]["completion_tokens"] <= 4 and Decimal(str(reply["price"])) > 0
    pieces = list(ol.openlora.chat(published, [{"role": "user", "content": "hi"}], stream=True, max_tokens=4))
    assert all(isinstance(piece, str) for piece in pieces)
    with pytest.raises(openledger_sdk.OpenLedgerError, match="is not served"):
        ol.openlora.deploy("never-published")


def test_paid_records_are_listed_for_the_payer_and_the_owner(platform: RunningHub, published: str) -> None:
    token = platform.ensure_user("lora-lister")
    platform.fund("lora-lister")
    client = openai.OpenAI(base_url=f"{platform.url}/services/openlora/v1", api_key=token)
    ids = [
        client.chat.completions.create(
            model=published, messages=[{"role": "user", "content": f"q{i}"}], max_tokens=2
        ).id
        for i in range(3)
    ]
    ol = openledger_sdk.connect(platform.url, token)
    first, rest = ol.rewards.records(limit=2), ol.rewards.records(limit=2, offset=2)
    assert first["total"] == 3 and len(first["records"]) == 2 and len(rest["records"]) == 1
    listed = [record["request_id"] for record in first["records"] + rest["records"]]
    assert listed == ids[::-1]  # newest first, every paid request exactly once
    assert all(int(record["fee"]) > 0 and record["payer"] == "lora-lister" for record in first["records"])
    url = f"/services/platform/api/models/{published}/records"
    with platform.as_token(platform.ensure_user("lora-owner")) as owner:
        owned = owner.get(url, params={"limit": 500}).json()
    assert set(ids) <= {record["request_id"] for record in owned["records"]}
    assert all(record["payer"] is None for record in owned["records"])  # payers' names stay private
    with platform.as_token(token) as stranger:
        assert stranger.get(url).status_code == 403
    with platform.as_token(token) as user:
        assert user.get("/services/platform/api/rewards/records", params={"limit": 0}).status_code == 422


def test_revenue_is_for_the_owner_only(platform: RunningHub, published: str) -> None:
    url = f"/services/platform/api/models/{published}/revenue"
    with platform.as_token(platform.ensure_user("lora-owner")) as owner:
        answer = owner.get(url)
    assert answer.status_code == 200 and answer.json()["totals"]["requests"] >= 1
    with platform.as_token(platform.ensure_user("lora-user")) as stranger:
        assert stranger.get(url).status_code == 403


def test_an_asker_who_cannot_pay_is_refused_before_any_generation(platform: RunningHub, published: str) -> None:
    token = platform.ensure_user("lora-broke")
    client = openai.OpenAI(base_url=f"{platform.url}/services/openlora/v1", api_key=token, max_retries=0)
    ask = {"model": published, "messages": [{"role": "user", "content": "Served fact 3?"}], "max_tokens": 6}
    recorded = _revenue_requests(platform, published)
    with pytest.raises(openai.RateLimitError) as refused:  # OpenAI's shape: 429 insufficient_quota
        client.chat.completions.create(**ask)
    assert refused.value.status_code == 429 and refused.value.code == "insufficient_quota"
    message = refused.value.body["message"]
    assert "can spend 0 OPEN" in message and "may cost up to" in message and "ask your instructor" in message
    assert _revenue_requests(platform, published) == recorded  # nothing served, nothing recorded

    # The free base model still answers, and once funded the same request goes through (and is recorded).
    base = client.chat.completions.create(model="tiny-base", messages=ask["messages"], max_tokens=2)
    assert base.choices[0].message.content is not None
    platform.fund("lora-broke", "1")
    assert client.chat.completions.create(**ask).usage.completion_tokens > 0
    assert _revenue_requests(platform, published) == recorded + 1


def test_fifty_requests_at_once_from_a_payer_who_can_afford_three(platform: RunningHub, published: str) -> None:
    """The reservation through the real hub and the real chain balance: before it, all 50 were served."""
    name = "lora-three"
    token = platform.ensure_user(name)
    price = 25 * 10**16  # the published model's 0.25 OPEN per 1k tokens
    most = inference_fee(4, 1, price, price, platform.settings.rewards.platform_fee_wei)
    platform.fund(name, format(Decimal(3 * most) / 10**18, "f"))  # exactly three requests at their longest
    ask = {"model": published, "prompt": [11, 12, 13, 14], "max_tokens": 1, "temperature": 0}

    def send(_: int) -> int:
        with platform.as_token(token) as client:
            return client.post("/services/openlora/v1/completions", json=ask).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(send, range(50)))
    assert statuses.count(200) == 3 and statuses.count(429) == 47, statuses
    records = openledger_sdk.connect(platform.url, token).rewards.records()
    assert records["total"] == 3 and sum(int(record["fee"]) for record in records["records"]) <= 3 * most


def _revenue_requests(platform: RunningHub, model: str) -> int:
    with platform.as_token(platform.ensure_user("lora-owner")) as owner:
        answer = owner.get(f"/services/platform/api/models/{model}/revenue", params={"days": 1})
    assert answer.status_code == 200, answer.text
    return answer.json()["totals"]["requests"]
