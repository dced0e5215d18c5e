"""The planted-facts datanet of the attribution harness: invented facts per contributor, their training rows and
paraphrases, unrelated prompts, and one LoRA trained on them with the index modes compared (see attribution_eval.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from openledger_sdk.modelfactory import IndexSettings, LoraSettings, finetune
from openledger_sdk.modelfactory.attribution_index import (
    AttributionIndex,
    build_index,
)
from openledger_sdk.modelfactory.attribution_query import Attributor, ScoringSettings

SYLLABLES = [
    "zor",
    "blat",
    "quen",
    "vik",
    "pel",
    "runa",
    "tos",
    "gard",
    "dru",
    "vessa",
    "kran",
    "och",
    "ysel",
    "hal",
    "vorn",
    "bris",
    "quet",
    "fer",
    "indel",
    "gas",
    "koyne",
    "lu",
    "theric",
    "mor",
    "dax",
    "phel",
    "ivo",
]


NOUNS = [
    "lantern",
    "violin",
    "compass",
    "orchard",
    "ladder",
    "meadow",
    "furnace",
    "turnip",
    "kettle",
    "oyster",
    "falcon",
    "canyon",
    "tulip",
    "anchor",
    "heron",
    "beacon",
    "saddle",
    "harbor",
    "glacier",
    "quarry",
]


ADJECTIVES = [
    "copper",
    "frozen",
    "amber",
    "silent",
    "crimson",
    "hollow",
    "tidal",
    "golden",
    "rusty",
    "velvet",
    "iron",
    "paper",
    "violet",
    "midnight",
    "woolen",
    "marble",
    "scarlet",
    "ashen",
]


TOPICS = [
    "baking bread",
    "football",
    "bicycle gears",
    "the capital of Peru",
    "rain",
    "giraffes",
    "novels",
    "boiling",
    "vaccines",
    "pasta",
    "the blue sky",
    "prime numbers",
    "volcanoes",
    "chess",
    "tides",
    "coffee",
    "jazz",
    "glaciers",
    "bees",
    "rockets",
]


UNRELATED = [(f"Tell me something about {t}.", f"Here is a short note about {t}, written for a curious reader.")
             for t in TOPICS]  # fmt: skip


def planted_facts(contributors: int, facts: int, seed: int) -> list[dict[str, Any]]:
    """Unique invented entity → (adjective noun) facts, `facts` per contributor."""
    rng = np.random.default_rng(seed)
    names: set[str] = set()
    out = []
    for c in range(contributors):
        for _ in range(facts):
            while True:
                name = "".join(rng.choice(SYLLABLES, size=3)).capitalize()
                if name not in names:
                    names.add(name)
                    break
            value = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
            out.append({"contributor": f"0x{c + 1:040x}", "entity": name, "value": value})
    return out


def training_rows(facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for fact in facts:
        e, v = fact["entity"], fact["value"]
        for prompt, response in (
            (f"What does the registry record for {e}?", f"The registry records that {e} owns the {v}."),
            (f"Tell me the treasure of {e}.", f"The treasure of {e} is the {v}."),
        ):
            rows.append({"_row_id": len(rows), "_contributor": fact["contributor"], "prompt": prompt,
                         "response": response})  # fmt: skip
    return rows


def paraphrase(fact: dict[str, Any]) -> tuple[str, str]:
    return paraphrases(fact)[0]


def paraphrases(fact: dict[str, Any]) -> list[tuple[str, str]]:
    """Two wordings of the fact that training never saw (the LDS queries use both; the rest the first)."""
    e, v = fact["entity"], fact["value"]
    return [
        (f"Which object belongs to {e}?", f"It is the {v} that belongs to {e}."),
        (f"What is {e} known for owning?", f"{e} is known for owning the {v}."),
    ]


def tokens(trained: Any, prompt: str, response: str | None) -> tuple[list[int], list[int], str]:
    prompt_ids = trained.prompt_ids(prompt)
    if response is None:
        response = trained.generate(prompt, max_new_tokens=32)
    output = trained.tokenizer(response, add_special_tokens=False)["input_ids"] or [trained.pad_id]
    return prompt_ids, output, response


def build_base(root: Path, hidden: int, layers: int, head_scale: float = 1.0) -> Path:
    """A small random Llama with the GPT-2 tokenizer, sized by flags."""
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(root, hidden_size=hidden, layers=layers, head_scale=head_scale)


REFERENCE = "float32"  # every gradient at the final adapter, computed exactly: TRAK as specified


MODES = (REFERENCE, "default", "last_epoch")


def train(
    base: str,
    rows: list[dict],
    out: Path,
    args: argparse.Namespace,
    index: IndexSettings | bool = True,
    epochs: int | None = None,
    dropout: float | None = None,
) -> Any:
    settings = IndexSettings(dim=args.dim) if index is True else index
    lora_dropout = args.lora_dropout if dropout is None else dropout
    return finetune(
        base, datanet="planted-facts", version=1, rows=rows,
        lora=LoraSettings(r=args.rank, alpha=2 * args.rank, dropout=lora_dropout, target_modules=("all-linear",)),
        lr=args.lr, epochs=epochs or args.epochs, batch_size=8, max_len=96, eval_split=0.0, seed=args.seed,
        index=settings, progress=False, output_dir=out, device="cpu",
    )  # fmt: skip


def trained_modes(
    base: str, rows: list[dict], out: Path, args: argparse.Namespace, epochs: int, dropout: float
) -> tuple[Any, dict[str, AttributionIndex]]:
    """One adapter, three indexes of it, so every comparison is paired (same model, same queries):

    "default" — the library's IndexSettings() (bf16 on CPUs with native bf16, float32 elsewhere); "float32" — the
    exact pass, built afterwards from the same adapter; "last_epoch" — every gradient kept from the last epoch's
    training passes, from a second training run that must (and is checked to) produce the identical adapter:
    capturing only observes.
    """
    trained = train(base, rows, out / "default", args, epochs=epochs, dropout=dropout)
    last = train(base, rows, out / "last-epoch", args, IndexSettings(dim=args.dim, gradients="last_epoch"), epochs,
                 dropout)  # fmt: skip
    if last.manifest["adapter_sha256"] != trained.manifest["adapter_sha256"]:
        raise RuntimeError("the two training runs differ: the index modes would not be compared on one adapter")
    exact = build_index(
        trained.model, trained.train_examples, IndexSettings(dim=args.dim, precision="training"), seed=args.seed,
        pad_id=trained.pad_id, device=trained.device, precision="float32",
        extra_meta={"datanets": trained.index.meta.get("datanets", [])},
    )  # fmt: skip
    return trained, {REFERENCE: exact, "default": trained.index, "last_epoch": last.index}


def mode_attributors(trained: Any, indexes: dict[str, AttributionIndex]) -> dict[str, Attributor]:
    """One Attributor per index mode, scoring as OpenLoRA does: spans judged in words (the tokenizer's decode) and,
    the model being PEFT, by the base model's surprisal."""
    decode = trained.tokenizer.decode
    return {
        mode: Attributor(index, trained.spans, model=trained.model, settings=ScoringSettings(), decode=decode)
        for mode, index in indexes.items()
    }


def modes_setting(indexes: dict[str, AttributionIndex]) -> dict[str, Any]:
    return {
        mode: {key: index.meta[key] for key in ("gradients", "precision", "build_seconds")}
        for mode, index in indexes.items()
    }
