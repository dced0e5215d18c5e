"""Gas to put N attribution records on-chain: one `recordInference` transaction each (the baseline) vs one
`commitEpoch` Merkle root for all N. Starts its own anvil; writes bench/results/ledger_gas.json.

    .venv/bin/python -m bench.ledger_gas [--n 1000] [--out bench/results/ledger_gas.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hub.chain.anvil import start_anvil
from hub.ledger.artifacts import sources_hash
from hub.ledger.contracts import EpochTotals, Ledger
from hub.ledger.deploy import deploy_or_attach
from hub.ledger.keys import AnvilDevKey
from hub.ledger.tx import build_transaction, estimate_gas, sign, suggest_fees
from hub.settings import Settings
from openledger_sdk.ledger import InferenceRecord, build_payouts_tree, build_records_tree, derive_id

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "results" / "ledger_gas.json"


def make_records(n: int) -> list[InferenceRecord]:
    """Deterministic, realistic-looking records: distinct users and models, varied token counts and fees."""
    return [
        InferenceRecord(
            record_id=derive_id("inference", f"bench-{i}"),
            model_id=derive_id("model", f"model-{i % 17}"),
            user="0x" + derive_id("user", str(i % 97))[:20].hex(),
            tokens=50 + (i * 37) % 900,
            fee=(50 + (i * 37) % 900) * 25 * 10**12,
            attribution_hash=derive_id("attribution", str(i)),
        )
        for i in range(n)
    ]


def per_record_transactions(ledger: Ledger, signer: Any, records: list[InferenceRecord]) -> dict[str, Any]:
    """(a) one transaction per record. Signed up front with local nonces and sent back to back, so the wall time
    is the chain's, not Python's round trips; gas is what each receipt says."""
    w3, attribution = ledger.w3, ledger.attribution
    calls = [attribution.record_inference(record) for record in records]
    gas_limit = estimate_gas(w3, calls[0], signer.address)  # every call has the same shape
    fees, nonce = suggest_fees(w3), w3.eth.get_transaction_count(signer.address, "pending")
    started = time.perf_counter()
    hashes = []
    for offset, call in enumerate(calls):
        tx = build_transaction(
            w3, call, signer.address, nonce=nonce + offset, gas=gas_limit, fees=fees, chain_id=ledger.chain_id
        )
        hashes.append(w3.eth.send_raw_transaction(sign(signer, tx).raw_transaction))
    receipts = [w3.eth.wait_for_transaction_receipt(h, timeout=300, poll_latency=0.01) for h in hashes]
    wall = time.perf_counter() - started
    failed = [r["transactionHash"].hex() for r in receipts if r["status"] != 1]
    if failed:
        raise SystemExit(f"{len(failed)} recordInference transactions reverted, e.g. {failed[0]}")
    total = sum(r["gasUsed"] for r in receipts)
    return {
        "transactions": len(receipts),
        "total_gas": total,
        "gas_per_record": total / len(records),
        "min_gas": min(r["gasUsed"] for r in receipts),
        "max_gas": max(r["gasUsed"] for r in receipts),
        "wall_s": round(wall, 3),
    }


def epoch_root(ledger: Ledger, signer: Any, records: list[InferenceRecord]) -> dict[str, Any]:
    """(b) one commitEpoch: the Merkle root of all records plus totals."""
    started = time.perf_counter()
    tree = build_records_tree(records)
    build_s = time.perf_counter() - started
    payouts = build_payouts_tree({record.user: record.fee for record in records[:100]})
    fees = sum(record.fee for record in records)
    owner, protocol = fees * 3 // 10, fees // 10
    totals = EpochTotals(len(records), sum(r.tokens for r in records), fees, owner, fees - owner - protocol, protocol)
    call = ledger.attribution.commit_epoch(1, tree.root, payouts.root, totals, "blob://bench/epoch-1.json")
    receipt = ledger.attribution.send(call, signer)
    # The proof that any one record is in the epoch: what an auditor checks off-chain (or on-chain, if ever needed).
    proof_len = len(tree.get_proof(0))
    return {
        "transactions": 1,
        "total_gas": receipt["gasUsed"],
        "gas_per_record": receipt["gasUsed"] / len(records),
        "calldata_bytes": (len(call.data) - 2) // 2,
        "python_tree_build_s": round(build_s, 3),
        "proof_length": proof_len,
    }


def claim_gas(ledger: Ledger, signer: Any, n_accounts: int) -> dict[str, Any]:
    """Context: one cumulative claim against a payouts tree of n accounts (paid once per account, not per record)."""
    accounts = {"0x" + derive_id("payee", str(i))[:20].hex(): (i + 1) * 10**15 for i in range(n_accounts)}
    tree = build_payouts_tree(accounts)
    token, distributor = ledger.token, ledger.distributor
    token.send(token.mint(distributor.address, sum(accounts.values())), signer)
    distributor.send(distributor.set_root(tree.root, distributor.merkle_root()), signer)
    account, amount = tree.at(0)
    receipt = distributor.send(distributor.claim(account, amount, tree.root, tree.get_proof(0)), signer)
    return {"accounts_in_tree": n_accounts, "proof_length": len(tree.get_proof(0)), "gas": receipt["gasUsed"]}


def _python() -> str:
    """The interpreter as typed from the repo root (`.venv/bin/python`), for the `command` field."""
    executable = Path(sys.executable)
    return str(executable.relative_to(REPO)) if executable.is_relative_to(REPO) else "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="attribution records (default 1000)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    given = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(given)

    records = make_records(args.n)
    node = start_anvil(free_port())
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = Settings(
                settings_file=Path(data_dir) / "openledger.toml",
                paths={"data_dir": data_dir},
                chain={"rpc_url": node.rpc_url, "chain_id": node.chain_id},
            )
            deployment = deploy_or_attach(settings, key_source=AnvilDevKey(0))
            ledger, signer = deployment.ledger, deployment.deployer
            per_record = per_record_transactions(ledger, signer, records)
            epoch = epoch_root(ledger, signer, records)
            claim = claim_gas(ledger, signer, args.n)
            client = ledger.w3.client_version
    finally:
        node.stop()

    result = {
        "benchmark": "ledger_gas",
        "command": " ".join([_python(), "-m bench.ledger_gas", *map(shlex.quote, given)]),
        "n_records": args.n,
        "chain": {"client": client, "chain_id": node.chain_id},
        "contracts": {
            "sources_hash": sources_hash(),
            "compiler": "solc-js 0.8.37",
            "settings": "optimizer 200 runs, evm cancun",
        },
        "baseline_per_record_tx": per_record,
        "epoch_root": epoch,
        "ratio_gas_per_record": round(per_record["gas_per_record"] / epoch["gas_per_record"], 1),
        "claim": claim,
        "notes": (
            "gas is receipt gasUsed, including the 21000 intrinsic gas of each transaction; (a) stores each record's "
            "leaf hash (duplicate check) and emits an event, (b) stores one root and the epoch totals"
        ),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"N={args.n}: per-record tx {per_record['gas_per_record']:.0f} gas/record, "
        f"epoch root {epoch['gas_per_record']:.1f} gas/record, ratio {result['ratio_gas_per_record']}x -> {args.out}"
    )
    return result


if __name__ == "__main__":
    main()
