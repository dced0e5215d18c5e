"""OpenAI conformance of OpenLoRA, as a script: the checks of `tests/openai_conformance.py` (the official `openai`
client, sync and async, and LangChain's ChatOpenAI against a real OpenLoRA server over HTTP, tiny model) run once,
and the counts go to bench/results/openai_conformance.json with the command and package versions.

    .venv/bin/python bench/openai_conformance.py          # about a minute on 2 cores
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hub_bench import command_line, machine_info, versions, write_result  # noqa: E402
from tests.openai_conformance import conformance_target, run_checks  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "openai_conformance.json"


def main() -> int:
    start = time.perf_counter()
    with conformance_target() as target:
        results = run_checks(target)
    failed = {name: why for name, why in results.items() if why is not None}
    write_result(
        RESULTS,
        {
            "command": command_line(),
            "checks": len(results),
            "passed": len(results) - len(failed),
            "failed": failed,
            "seconds": round(time.perf_counter() - start, 1),
            "check_names": list(results),
            "versions": versions(("openai", "langchain-openai", "langchain-core", "fastapi", "torch", "transformers")),
            "machine": machine_info(),
        },
    )
    print(f"{len(results) - len(failed)}/{len(results)} checks passed -> {RESULTS}")
    for name, why in failed.items():
        print(f"FAILED {name}: {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
