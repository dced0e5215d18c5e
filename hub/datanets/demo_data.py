"""The demo datanet: a few hundred prompt/response rows about this platform, composed from facts written for it.

Each fact gets a question of its own, and every pair of facts a question about how the two fit together, so no two
rows are near duplicates of each other. Three demo contributors split the rows; `seed_demo_datanet` creates,
approves and publishes the datanet once (it does nothing when the datanet exists).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from hub.datanets.spec import DatanetSpec

DEMO_NAME = "openledger-handbook"
DEMO_OWNER = "demo"
DEMO_CONTRIBUTORS = ("demo", "ada", "grace")


@dataclass(frozen=True)
class Fact:
    topic: str
    statement: str


FACTS: tuple[Fact, ...] = (
    Fact(
        "a datanet", "A datanet is a named, licensed and versioned dataset whose every row records who contributed it."
    ),
    Fact(
        "a contribution", "A contribution is one upload of rows: all of them pass validation together or none is kept."
    ),
    Fact(
        "the row hash",
        "Every row is hashed with keccak256 over its canonical JSON, so equal content always gives equal hashes.",
    ),
    Fact(
        "near-duplicate detection",
        "MinHash signatures over character shingles let the platform refuse rows that almost copy existing ones.",
    ),
    Fact(
        "curation",
        "The owner or a validator approves or rejects each submission, and a rejection always carries a reason.",
    ),
    Fact(
        "a datanet version",
        "Publishing freezes the approved rows into a Parquet snapshot that never changes afterwards.",
    ),
    Fact(
        "the Merkle root",
        "A version's Merkle root commits to every row id, row hash and contributor address in the snapshot.",
    ),
    Fact(
        "an inclusion proof",
        "A short list of sibling hashes proves that one row belongs to a version without downloading the rest.",
    ),
    Fact(
        "the DatanetRegistry contract",
        "DatanetRegistry stores each version's root, its row count and the root of the per-contributor counts.",
    ),
    Fact(
        "the relay",
        "Chain writes wait in an outbox row committed with the business change, and a relay signs and sends them.",
    ),
    Fact(
        "the custodial wallet",
        "Each hub user gets a custodial key on first use, and may later link an address of their own for payouts.",
    ),
    Fact(
        "a LoRA adapter",
        "A LoRA adapter trains two small low-rank matrices per target layer while the base model stays frozen.",
    ),
    Fact(
        "the LoRA rank",
        "The rank sets how many directions an adapter can change; small ranks such as 8 or 16 are usually enough.",
    ),
    Fact(
        "ModelFactory",
        "ModelFactory is the notebook panel that fine-tunes an adapter on one datanet version with a live loss plot.",
    ),
    Fact(
        "the provenance manifest",
        "Training records the base model hash, the datanet version roots, the config hash and the data order seed.",
    ),
    Fact(
        "OpenLoRA",
        "OpenLoRA serves one base model with many adapters and batches requests for several adapters in one pass.",
    ),
    Fact(
        "adapter slots",
        "Adapters live on disk, in a CPU cache and in a fixed number of device slots refilled as requests arrive.",
    ),
    Fact(
        "gradient attribution",
        "Per-example LoRA gradients are projected once at training time, so scoring an answer needs one backward pass.",
    ),
    Fact(
        "span evidence",
        "A suffix array over the training tokens finds long verbatim spans of an answer and weighs them by rarity.",
    ),
    Fact(
        "the unattributed pool",
        "When no training example clears the null threshold, the contributor share goes to an unattributed pool.",
    ),
    Fact(
        "epoch settlement",
        "Settlement builds one Merkle tree of the epoch's inference records and commits its root with the totals.",
    ),
    Fact(
        "reward claims",
        "Contributors claim cumulative rewards with a Merkle proof, and anyone may submit a claim for an address.",
    ),
    Fact(
        "the inference fee",
        "The fee of one inference is the token count times the model price plus a platform fee, split three ways.",
    ),
    Fact(
        "the ol object",
        "Every hub kernel starts with a connected client named ol, so no token has to be pasted into a notebook.",
    ),
    Fact(
        "workshops",
        "Instructors hand out template notebooks to a class and can run them headless with papermill to check them.",
    ),
    Fact(
        "the blob store",
        "Snapshots and adapters are stored by their sha256 digest, in a local directory or any fsspec location.",
    ),
)

SINGLE_PROMPTS = (
    "What is {topic} on OpenLedger?",
    "Explain {topic} in one or two sentences.",
    "Why does the platform have {topic}?",
    "Give me a short description of {topic}.",
)
PAIR_PROMPTS = (
    "How do {a} and {b} fit together?",
    "What is the link between {a} and {b}?",
    "I understand {a}. Where does {b} come in?",
    "Compare {a} with {b}.",
    "Which matters first for a new user, {a} or {b}?",
)
PAIR_BRIDGES = (
    "Both are steps of the same pipeline, from contributed rows to paid attribution.",
    "Keeping them separate lets each one be checked on its own.",
    "Seen together they explain how provenance survives from data to inference.",
    "One of them produces what the other consumes.",
    "A notebook user meets both within the first hour on the hub.",
)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def demo_rows() -> list[dict[str, str]]:
    """Every row of the demo datanet: one per fact, then one per pair of facts."""
    rows = []
    for i, fact in enumerate(FACTS):
        prompt = SINGLE_PROMPTS[i % len(SINGLE_PROMPTS)].format(topic=fact.topic)
        rows.append({"prompt": prompt, "response": fact.statement})
    for n, (a, b) in enumerate(itertools.combinations(FACTS, 2)):
        prompt = PAIR_PROMPTS[n % len(PAIR_PROMPTS)].format(a=a.topic, b=b.topic)
        bridge = PAIR_BRIDGES[(n // len(PAIR_PROMPTS)) % len(PAIR_BRIDGES)]
        response = f"{_cap(a.topic)}: {a.statement} {_cap(b.topic)}: {b.statement} {bridge}"
        rows.append({"prompt": _cap(prompt), "response": response})
    return rows


def demo_contributions() -> dict[str, list[dict[str, str]]]:
    """The rows split round-robin among the demo contributors."""
    shares: dict[str, list[dict[str, str]]] = {name: [] for name in DEMO_CONTRIBUTORS}
    for i, row in enumerate(demo_rows()):
        shares[DEMO_CONTRIBUTORS[i % len(DEMO_CONTRIBUTORS)]].append(row)
    return shares


DEMO_SPEC = DatanetSpec(
    name=DEMO_NAME,
    summary="Questions and answers about OpenLedger Notebooks: datanets, LoRA, serving, attribution and rewards.",
    description=(
        "# OpenLedger handbook\n\n"
        "Prompt/response pairs written for this platform, for a first fine-tuning run in ModelFactory.\n\n"
        "* one row per platform fact, and one per pair of facts\n"
        "* contributed by the demo users `demo`, `ada` and `grace`\n"
    ),
    tags=["demo", "instruction-tuning", "openledger"],
    license="CC-BY-4.0",
    schema={"prompt": "str", "response": "str"},
    visibility="public",
    approval="owner",
)


@dataclass(frozen=True)
class DemoUser:
    name: str
    admin: bool = False


def seed_demo_datanet(runtime: Any) -> dict[str, Any]:
    """Create, fill, approve and publish the demo datanet unless it exists; returns what happened."""
    from hub.datanets.service import DatanetError, DatanetService

    service: DatanetService = runtime.extras["datanets"]
    owner = DemoUser(DEMO_OWNER)
    try:
        existing = service.get(owner, DEMO_NAME)
    except DatanetError as err:
        if err.status != 404:
            raise
    else:
        return {"status": "exists", "name": DEMO_NAME, "latest_version": existing["latest_version"]}
    service.create(owner, DEMO_SPEC)
    submissions = [
        service.contribute_rows(DemoUser(name), DEMO_NAME, rows) for name, rows in demo_contributions().items()
    ]
    for submission in submissions:
        service.review(owner, DEMO_NAME, submission["id"], True, "demo data, written for the platform")
    version = service.publish(owner, DEMO_NAME)
    return {
        "status": "created",
        "name": DEMO_NAME,
        "version": version["version"],
        "rows": version["row_count"],
        "merkle_root": version["merkle_root"],
    }
