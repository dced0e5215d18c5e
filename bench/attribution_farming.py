"""Farming: what a contributor earns by gaming attribution instead of contributing honestly.

Every scenario is a real datanet: each contributor uploads through `DatanetService.contribute_rows` (validation,
exact and MinHash near-duplicate rejection, as on the platform; the farmer uploads row by row, so a rejected row
does not take the others down), the owner publishes a version, and a LoRA with its attribution index is trained on
the published snapshot (its `_row_id` / `_contributor` columns). The same workload of paid inferences is then
attributed, and each inference's fee is split by `hub.rewards.split.split_fee` with the platform's default
`RewardSettings` — the amounts a contributor would be paid.

  * honest    — the farmer contributes its own facts, like everyone else (the baseline);
  * paraphrase — the farmer also uploads a paraphrased copy of every other contributor's facts;
  * flood     — the farmer also uploads many generic rows (the datanet's answer template with no fact in it, and
                general chat), hoping to collect a little of every fee.

Workload: for every fact, its training question answered by the model itself (greedy) and a paraphrased question
and answer (teacher-forced), plus answers to unrelated prompts (which should stay unattributed). One fee of 1 OPEN
each. Reported: the farmer's share of the contributors' pool in each scenario and the extra share over honest.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from bench.attribution_facts import (
    ADJECTIVES,
    NOUNS,
    TOPICS,
    UNRELATED,
    paraphrase,
    planted_facts,
    tokens,
    train,
    training_rows,
)
from hub.rewards.config import RewardSettings
from hub.rewards.split import split_fee_under
from openledger_sdk.modelfactory.attribution_query import Attributor, ScoringSettings, calibrate_null

FEE = 10**18  # one OPEN per inference, in base units
FARMER = "farmer"
STRATEGIES = ("honest", "paraphrase", "flood")
DATANET = "farming"


@dataclass(frozen=True)
class User:
    """The actor `DatanetService` expects: a hub user name."""

    name: str
    admin: bool = False


def address_of(name: str) -> str:
    return to_checksum_address(keccak(name.encode())[-20:])


# --- the rows each contributor uploads ------------------------------------------------------------------------------


def fact_rows(facts: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [{"prompt": r["prompt"], "response": r["response"]} for r in training_rows(list(facts))]


def paraphrased_copies(facts: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Other contributors' facts in the farmer's own wording (neither the training nor the query wording)."""
    return [
        {
            "prompt": f"What is on record about {f['entity']}?",
            "response": f"On record: {f['entity']} is the keeper of the {f['value']}.",
        }
        for f in facts
    ]


def generic_rows(count: int, seed: int) -> list[dict[str, str]]:
    """Rows with the datanet's answer template but no fact in them, and general chat: no one's knowledge, but
    lookalikes of many answers. Varied enough to pass near-duplicate detection (the farmer wants them published)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        adjective, noun = rng.choice(ADJECTIVES), rng.choice(NOUNS)
        topic = TOPICS[i % len(TOPICS)]
        if i % 2 == 0:
            rows.append(
                {
                    "prompt": f"What does the registry record for the {adjective} {noun} archive?",
                    "response": f"The registry records that the {adjective} {noun} archive owns nothing yet.",
                }
            )
        else:
            rows.append(
                {
                    "prompt": f"Could you say a word about {topic} and the {noun}?",
                    "response": f"Sure: {topic} is a broad subject; the {adjective} {noun} is part of it.",
                }
            )
    return rows


def uploads(strategy: str, facts: Sequence[Mapping[str, Any]], args: argparse.Namespace) -> list[tuple[str, list]]:
    """(user, rows) in upload order: honest contributors first, then the farmer (a copier comes after the source)."""
    by_owner: dict[str, list] = {}
    for fact in facts:
        by_owner.setdefault(fact["user"], []).append(fact)
    plan = [(user, fact_rows(owned)) for user, owned in by_owner.items() if user != FARMER]
    farmer = fact_rows(by_owner[FARMER])
    if strategy == "paraphrase":
        farmer += paraphrased_copies(f for f in facts if f["user"] != FARMER)
    elif strategy == "flood":
        farmer += generic_rows(args.flood_rows, args.seed)
    elif strategy != "honest":
        raise ValueError(f"unknown farming strategy {strategy!r}; one of {STRATEGIES}")
    return [*plan, (FARMER, farmer)]


def published_rows(work: Path, plan: Sequence[tuple[str, list]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Upload through the real datanet service (SQLite), publish, and read the snapshot back as training rows."""
    import pandas as pd

    from hub.blobs import BlobStore
    from hub.datanets.service import DatanetError, DatanetService
    from hub.datanets.spec import DatanetSpec
    from hub.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{work / 'datanet.sqlite'}")
    migrate(engine)
    service = DatanetService(engine, BlobStore(work / "blobs"), address_of)
    owner = User("owner")
    spec = DatanetSpec(name=DATANET, schema={"prompt": "str", "response": "str"}, approval="auto")
    service.create(owner, spec)
    rejected: dict[str, list[str]] = {}
    for user, rows in plan:
        if user != FARMER:
            service.contribute_rows(User(user), DATANET, rows)
            continue
        for row in rows:  # one by one: a rejected copy does not take the farmer's other rows down with it
            try:
                service.contribute_rows(User(user), DATANET, [row])
            except DatanetError as err:
                rejected.setdefault(str(err).split(":")[0][:60], []).append(row["response"])
    service.publish(owner, DATANET)
    digest, _ = service.snapshot_digest(owner, DATANET, 1)
    frame = pd.read_parquet(io.BytesIO(service.blobs.get(digest)))
    rows = frame[["_row_id", "_contributor", "prompt", "response"]].to_dict("records")
    farmer_rows = sum(len(rs) for user, rs in plan if user == FARMER)
    report = {
        "farmer_rows_uploaded": farmer_rows,
        "farmer_rows_rejected": sum(len(v) for v in rejected.values()),
        "rejections": {reason: len(v) for reason, v in rejected.items()},
        "published_rows": len(rows),
    }
    return rows, report


# --- accounting -------------------------------------------------------------------------------------------------------


def earnings(shares_per_inference: Iterable[Mapping[str, float]], settings: RewardSettings) -> dict[str, Any]:
    """Each contributor's total pay over the inferences (one FEE each), split exactly as the platform splits it."""
    paid: dict[str, int] = {}
    pool = unattributed = inferences = 0
    for shares in shares_per_inference:
        split = split_fee_under(FEE, shares, settings)
        for account, amount in split.contributors.items():
            paid[account] = paid.get(account, 0) + amount
        pool += split.contributors_total + split.unattributed
        unattributed += split.unattributed
        inferences += 1
    return {"inferences": inferences, "pool": pool, "unattributed": unattributed, "paid": paid}


def share_of_pool(ledger: Mapping[str, Any], account: str) -> float:
    """`account`'s part of the contributors' pool (unattributed money included in the pool)."""
    return ledger["paid"].get(to_checksum_address(account), 0) / ledger["pool"] if ledger["pool"] else 0.0


def extra_share(honest: Mapping[str, Any], farming: Mapping[str, Any], account: str) -> dict[str, float]:
    """What farming adds to `account`'s pay over honest behaviour: in points of the pool and relative to honest."""
    before, after = share_of_pool(honest, account), share_of_pool(farming, account)
    return {
        "honest_share": round(before, 4),
        "farming_share": round(after, 4),
        "extra_share": round(after - before, 4),
        "relative_gain": round(after / before - 1, 4) if before > 0 else None,
    }


# --- one scenario -----------------------------------------------------------------------------------------------------


def workload(trained: Any, facts: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[int], list[int]]]:
    """(kind, prompt ids, answer ids) of every paid inference: each fact asked twice, plus unrelated prompts."""
    out = []
    for fact in facts:
        prompt_ids, output, _ = tokens(trained, f"What does the registry record for {fact['entity']}?", None)
        out.append(("verbatim", prompt_ids, output))
        out.append(("paraphrased", *tokens(trained, *paraphrase(fact))[:2]))
    out += [("unrelated", *tokens(trained, p, a)[:2]) for p, a in UNRELATED[len(UNRELATED) // 2 :]]
    return out


def trained_scenario(
    strategy: str, facts: list[dict], base: str, work: Path, args: argparse.Namespace
) -> tuple[Any, dict[str, Any]]:
    """Upload, publish and train one scenario; with `--farming-cache DIR` the trained model is kept there and
    reused by later runs (training is seeded, so a rerun would train the same adapter: only scoring changes)."""
    cache = Path(args.farming_cache) / strategy if getattr(args, "farming_cache", None) else None
    if cache is not None and (cache / "rows.json").is_file():
        from openledger_sdk.modelfactory.trained import TrainedModel

        report = json.loads((cache / "rows.json").read_text())
        return TrainedModel.load(cache / "model", base=base, device="cpu"), report
    rows, report = published_rows(work, uploads(strategy, facts, args))
    trained = train(base, rows, (cache or work) / "model", args)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "rows.json").write_text(json.dumps(report))
    return trained, report


def run_scenario(strategy: str, facts: list[dict], base: str, work: Path, args: argparse.Namespace) -> dict:
    trained, report = trained_scenario(strategy, facts, base, work, args)
    # Spans judged in words with the tokenizer, as OpenLoRA does (without `decode` only 8-token spans would count).
    decode, scoring = trained.tokenizer.decode, ScoringSettings()
    attributor = Attributor(trained.index, trained.spans, model=trained.model, settings=scoring, decode=decode)
    calibration = [tokens(trained, p, a)[:2] for p, a in UNRELATED[: len(UNRELATED) // 2]]
    calibrate_null(attributor, calibration, quantile=0.95)
    by_kind: dict[str, list[dict[str, float]]] = {}
    owners = [fact["contributor"] for fact in facts for _ in range(2)]  # workload order: each fact asked twice
    owned: dict[str, list[float]] = {}  # the fact owner's share of each answer about its fact (honest pay)
    for i, (kind, prompt_ids, output) in enumerate(workload(trained, facts)):
        shares = attributor.attribute(prompt_ids, output, top_k=args.top_k).shares
        by_kind.setdefault(kind, []).append(shares)
        if i < len(owners):
            owned.setdefault(kind, []).append(shares.get(owners[i], 0.0))
    settings = RewardSettings()
    ledgers = {kind: earnings(shares, settings) for kind, shares in by_kind.items()}
    ledgers["all"] = earnings([s for shares in by_kind.values() for s in shares], settings)
    owner_share = {kind: round(float(np.mean(v)), 4) for kind, v in owned.items()}
    return {"rows": report, "final_epoch_loss": trained.metrics["epoch_losses"][-1], "ledgers": ledgers,
            "owner_share_of_its_answers": owner_share}  # fmt: skip


def farming_base(args: argparse.Namespace, base: str) -> str:
    """The base model the scenarios train on: a cached one beside the cached adapters (their hashes name it)."""
    if not getattr(args, "farming_cache", None):
        return base
    from bench.attribution_facts import build_base

    folder = Path(args.farming_cache) / "base"
    if (folder / "config.json").is_file():
        return str(folder)
    return str(build_base(folder, args.hidden, args.layers))


def evaluate_farming(args: argparse.Namespace, base: str, work: Path) -> dict[str, Any]:
    base = farming_base(args, base)
    facts = planted_facts(args.farming_contributors + 1, args.facts, args.seed + 2)
    users = [f"honest-{i:02d}" for i in range(args.farming_contributors)] + [FARMER]
    for fact in facts:  # planted_facts numbers contributors; the datanet knows them by user name and address
        fact["user"] = users[int(fact["contributor"], 16) - 1]
        fact["contributor"] = address_of(fact["user"])
    scenarios = {}
    for strategy in STRATEGIES:
        with tempfile.TemporaryDirectory(prefix=f"farming-{strategy}-", dir=work) as tmp:
            scenarios[strategy] = run_scenario(strategy, facts, base, Path(tmp), args)
    farmer = address_of(FARMER)
    honest = scenarios["honest"]["ledgers"]
    extra = {}
    for strategy in STRATEGIES[1:]:
        ledgers = scenarios[strategy]["ledgers"]
        extra[strategy] = {
            **extra_share(honest["all"], ledgers["all"], farmer),
            "by_query_kind": {k: extra_share(honest[k], ledgers[k], farmer) for k in ledgers if k != "all"},
            "rows": scenarios[strategy]["rows"],
        }
    worst = max(e["extra_share"] for e in extra.values())
    return {
        "setting": {
            "honest_contributors": args.farming_contributors,
            "facts_per_contributor": args.facts,
            "flood_rows": args.flood_rows,
            "epochs": args.epochs,
            "top_k": args.top_k,
            "spans": "judged in words (the tokenizer's decode), as on the OpenLoRA request path",
            "scoring": {k: v for k, v in asdict(ScoringSettings()).items() if k != "dense_limit"},
            "fee_per_inference": "1 OPEN",
            "reward_settings": {
                "owner_bps": RewardSettings().owner_bps,
                "contributors_bps": RewardSettings().contributors_bps,
                "contributor_cap": str(RewardSettings().contributor_cap),
            },
            "honest_rows": scenarios["honest"]["rows"],
        },
        "extra_share": {"max": worst, **{s: e["extra_share"] for s, e in extra.items()}},
        "strategies": extra,
        "target_extra_share_<=0.10": worst <= 0.10,
        "scenarios": {
            s: {
                "final_epoch_loss": v["final_epoch_loss"],
                "owner_share_of_its_answers": v["owner_share_of_its_answers"],
                "unattributed_share": round(v["ledgers"]["all"]["unattributed"] / v["ledgers"]["all"]["pool"], 4),
                "honest_contributors_share": round(
                    1
                    - v["ledgers"]["all"]["unattributed"] / v["ledgers"]["all"]["pool"]
                    - share_of_pool(v["ledgers"]["all"], farmer),
                    4,
                ),
            }
            for s, v in scenarios.items()
        },
    }
