"""The escape suite in `make test`: a student on a real multi-user hub (started as root, as `make run` does) tries
every way we know to take what is not theirs; every attempt must fail. The same code writes
bench/results/security.json when run as `python -m bench.escape_suite`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.escape_suite import ESCAPE_HUB, merge_results, run_suite
from bench.hub_bench import running_hub

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="a multi-user hub starts as root (CI and `make test` run as root)"),
]


def test_a_student_cannot_escape(tmp_path: Path) -> None:
    with running_hub(**ESCAPE_HUB) as hub:
        results = run_suite(hub)
    escaped = [f"{r['attack']}: {r['detail']}" for r in results if r["succeeded"]]
    assert not escaped, "\n".join(escaped)
    assert len(results) >= 20
    summary = merge_results(tmp_path / "security.json", results)
    assert summary["escape_succeeded"] == 0 and summary["escape_attempts"] == len(results)
    # Merging keeps what the API fuzzer wrote to the same file.
    (tmp_path / "other.json").write_text(json.dumps({"fuzz_cases": 3}))
    assert merge_results(tmp_path / "other.json", results)["fuzz_cases"] == 3
