"""The OpenAI conformance suite (issue 17, item 4): every check of `tests/openai_conformance.py` as a test, against
one real OpenLoRA server over HTTP. The counts (`checks`, `passed`) go to tests/artifacts/openai_conformance.json;
`bench/openai_conformance.py` runs the same checks as a script and commits its result."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.openai_conformance import CHECKS, Target, conformance_target


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with conformance_target() as running:
        yield running


@pytest.fixture(scope="module")
def tally(artifacts_dir: Path) -> Iterator[dict[str, bool]]:
    outcomes: dict[str, bool] = {}
    yield outcomes
    summary = {
        "checks": len(CHECKS),
        "ran": len(outcomes),  # a -k selection runs fewer
        "passed": sum(outcomes.values()),
        "failed": sorted(n for n, ok in outcomes.items() if not ok),
    }
    (artifacts_dir / "openai_conformance.json").write_text(json.dumps(summary, indent=2) + "\n")


@pytest.mark.parametrize("name", list(CHECKS))
def test_openai_conformance(target: Target, tally: dict[str, bool], name: str) -> None:
    tally[name] = False
    CHECKS[name](target)
    tally[name] = True
