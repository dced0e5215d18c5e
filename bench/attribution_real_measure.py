"""The measurements of bench/attribution_real.py, each over the served adapter's HTTP API: planted questions
(precision@1, MRR, owner's share, split by correct and incorrect answers), off-topic prompts (false attribution) and
answer latency with and without attribution."""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import httpx
import numpy as np

from bench.attribution_real_server import ask, ask_streamed


def verbatim_question(fact: dict[str, Any]) -> str:
    return f"What does the registry record for {fact['entity']}?"


def paraphrased_question(fact: dict[str, Any]) -> str:
    return f"Which object belongs to {fact['entity']}?"  # never trained on


# --- quality -----------------------------------------------------------------------------------------------------


def ranking(attribution: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(e["contributor"] for e in attribution.get("top_examples", []) if "contributor" in e))


def planted_record(fact: dict[str, Any], kind: str, reply: dict[str, Any], by_value: dict[str, dict]) -> dict:
    attribution = reply["attribution"] or {}
    order = ranking(attribution)
    owner = fact["contributor"]
    produced = next((f for v, f in by_value.items() if v in reply["text"].lower()), None)
    return {
        "kind": kind, "entity": fact["entity"], "owner": owner, "answer": reply["text"],
        "correct": fact["value"] in reply["text"].lower(),
        "top1": order[0] if order else None,
        "rr": 1.0 / (order.index(owner) + 1) if owner in order else 0.0,
        "owner_share": float(attribution.get("shares", {}).get(owner, 0.0)),
        "attributed": bool(attribution.get("attributed")),
        "produced_owner": produced["contributor"] if produced else None,
        "top_examples": [{k: e.get(k) for k in ("row_id", "contributor", "score", "gradient_z", "span")}
                         for e in attribution.get("top_examples", [])[:3]],
    }  # fmt: skip


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    if not records:
        return {"queries": 0}
    out = {
        "queries": len(records),
        "precision_at_1": round(float(np.mean([r["top1"] == r["owner"] for r in records])), 4),
        "mrr": round(float(np.mean([r["rr"] for r in records])), 4),
        "owner_share": round(float(np.mean([r["owner_share"] for r in records])), 4),
        "attributed_rate": round(float(np.mean([r["attributed"] for r in records])), 4),
    }
    produced = [r for r in records if r["produced_owner"] and not r["correct"]]
    if produced:
        out["top1_owns_the_fact_produced"] = round(
            float(np.mean([r["top1"] == r["produced_owner"] for r in produced])), 4
        )
        out["answers_producing_another_fact"] = len(produced)
    return out


def evaluate_quality(http: httpx.Client, model: str, facts: list[dict], args: argparse.Namespace) -> dict[str, Any]:
    by_value = {f["value"]: f for f in facts}
    records = []
    for fact in facts:
        for kind, question in (("verbatim", verbatim_question(fact)), ("paraphrased", paraphrased_question(fact))):
            records.append(planted_record(fact, kind, ask(http, model, question, args, True), by_value))
    out: dict[str, Any] = {}
    for kind in ("verbatim", "paraphrased"):
        mine = [r for r in records if r["kind"] == kind]
        out[kind] = {
            "answered_correctly": round(float(np.mean([r["correct"] for r in mine])), 4),
            "correct": summarise([r for r in mine if r["correct"]]),
            "incorrect": summarise([r for r in mine if not r["correct"]]),
        }
    out["memorisation_rate"] = out["verbatim"]["answered_correctly"]
    out["examples"] = [{k: r[k] for k in ("kind", "entity", "answer", "correct", "attributed")} for r in records[:6]]
    out["misattributed"] = [
        {k: r[k] for k in ("kind", "entity", "owner", "answer", "attributed", "top_examples")}
        for r in records
        if r["correct"] and r["top1"] != r["owner"]
    ]
    return out


def offtopic_verdict(attribution: dict[str, Any], text: str, owner_of: dict[str, str]) -> dict[str, Any]:
    """Whether an off-topic answer's attribution is false. An overfitted adapter answers "The capital of Japan is the
    silent violin.": that answer does reproduce a contributor's planted value, and crediting that value's owner is
    right. False: attributed while reciting no planted value, or with the largest share going to someone who owns
    none of the values recited."""
    recited = {owner for value, owner in owner_of.items() if value in text.lower()}
    shares = attribution.get("shares") or {}
    attributed = bool(attribution.get("attributed"))
    top = max(shares, key=shares.get) if shares else None
    return {"recites": bool(recited), "attributed": attributed, "false": attributed and top not in recited}


def evaluate_offtopic(
    http: httpx.Client, model: str, items: list[dict], args: argparse.Namespace, owner_of: dict[str, str]
) -> dict[str, Any]:
    """`owner_of`: each planted value's contributor (`offtopic_verdict`). Both rates are reported: every attributed
    answer (`attributed_rate`) and the false ones (`false_attribution_rate`)."""
    rows = []
    for item in items:
        reply = ask(http, model, item["prompt"], args, True)
        attribution = reply["attribution"] or {}
        threshold = attribution.get("threshold") or {}
        rows.append({
            "category": item["category"], "prompt": item["prompt"], "answer": reply["text"],
            "status": attribution.get("status"),
            "gradient_fired": attribution.get("max_gradient_z", 0) > threshold.get("gradient_z", float("inf")),
            "span_fired": attribution.get("max_span", 0) > threshold.get("span", float("inf")),
            "shares": {who: round(v, 3) for who, v in (attribution.get("shares") or {}).items()},
            "max_gradient_z": attribution.get("max_gradient_z"),
            **offtopic_verdict(attribution, reply["text"], owner_of),
        })  # fmt: skip
    per_category = {
        c: round(float(np.mean([r["false"] for r in rows if r["category"] == c])), 4)
        for c in sorted({r["category"] for r in rows})
    }
    return {
        "prompts": len(rows),
        "false_attribution_rate": round(float(np.mean([r["false"] for r in rows])), 4),
        "attributed_rate": round(float(np.mean([r["attributed"] for r in rows])), 4),
        "by_category": per_category,
        "answers_reciting_a_planted_value": sum(r["recites"] for r in rows),
        "attributed_among_reciting": sum(r["attributed"] for r in rows if r["recites"]),
        "attributed_among_reciting_to_another_owner": sum(r["false"] for r in rows if r["recites"]),
        "attributed_among_not_reciting": sum(r["attributed"] for r in rows if not r["recites"]),
        "fired": {
            "gradient_only": sum(r["gradient_fired"] and not r["span_fired"] for r in rows),
            "span_only": sum(r["span_fired"] and not r["gradient_fired"] for r in rows),
            "both": sum(r["span_fired"] and r["gradient_fired"] for r in rows),
        },
        "statuses": sorted({str(r["status"]) for r in rows}),
        "attributed_examples": [{k: r[k] for k in ("prompt", "answer", "false")} for r in rows if r["attributed"]][:10],
        "false_examples": [
            {k: r[k] for k in ("prompt", "answer", "shares", "max_gradient_z", "gradient_fired", "span_fired")}
            for r in rows
            if r["false"]
        ],
    }


# --- latency -----------------------------------------------------------------------------------------------------


def p50(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def evaluate_latency(http: httpx.Client, model: str, prompts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved per prompt, so each comparison is taken side by side on a shared machine."""
    plain, attributed, streamed_last, streamed_final, compute = [], [], [], [], []
    for prompt in prompts:
        plain.append(ask(http, model, prompt, args, False)["wall"])
        with_attr = ask(http, model, prompt, args, True)
        attributed.append(with_attr["wall"])
        seconds = (with_attr["attribution"] or {}).get("seconds")
        if seconds is not None:
            compute.append(seconds / with_attr["wall"])
        stream = ask_streamed(http, model, prompt, args)
        streamed_last.append(stream["last_token"])
        streamed_final.append(stream["final"])
    base = p50(plain)
    return {
        "prompts": len(prompts),
        "p50_seconds": {
            "no_attribution": round(base, 4),
            "attribution": round(p50(attributed), 4),
            "streamed_last_token": round(p50(streamed_last), 4),
            "streamed_final_chunk": round(p50(streamed_final), 4),
        },  # fmt: skip
        "overhead_p50": {
            "non_streamed": round(p50(attributed) / base - 1, 4),
            "streamed_user_visible": round(p50(streamed_last) / base - 1, 4),
            "streamed_final_chunk": round(p50(streamed_final) / base - 1, 4),
        },
        "compute_share_p50": round(p50(compute), 4) if compute else None,
    }
