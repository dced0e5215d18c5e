"""Smoke test of bench/ledger_gas.py on a small N (the committed result is N=1000)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.ledger_gas import main


def test_gas_bench_small(tmp_path: Path) -> None:
    out = tmp_path / "ledger_gas.json"
    result = main(["--n", "20", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["command"].endswith("-m bench.ledger_gas --n 20 --out " + str(out))
    per_record, epoch = result["baseline_per_record_tx"], result["epoch_root"]
    assert per_record["transactions"] == 20 and epoch["transactions"] == 1
    assert per_record["gas_per_record"] > 21_000  # every per-record transaction pays the intrinsic gas
    assert result["ratio_gas_per_record"] > 1
