"""Fuzz every operation of every service's OpenAPI through the real hub, as an ordinary user (schemathesis).

    .venv/bin/python bench/fuzz_services.py [--examples 10]

Starts the real hub (proxy, platform, openlora, chain) in a throwaway data dir, creates a user, and for each
service loads `/services/<name>/openapi.json` and sends `--examples` generated requests per operation (schemathesis'
Hypothesis strategies: valid and invalid bodies, parameters and paths) with that user's token. The invariant: no
5xx answer and no dead service. Merges `fuzz_operations`, `fuzz_cases`, `fuzz_server_errors` (and details) into
bench/results/security.json, keeping the keys other benches write there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hub_bench import command_line, machine_info, running_hub, versions  # noqa: E402
from tests.hub_harness import RunningHub  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "security.json"
SERVICES = ("platform", "openlora", "chain")
FUZZ_USER = "fuzzer"


def fuzz_operation(
    operation: Any, base_url: str, headers: dict[str, str], examples: int, report: dict, seeded: bool = True
) -> None:
    """`examples` valid and `examples` invalid generated requests against one operation (schemathesis' positive and
    negative modes); 5xx answers and dropped connections are kept as failures."""
    from schemathesis import GenerationMode

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        _fuzz_mode(operation, operation.as_strategy(mode), base_url, headers, examples, report, seeded)


def _fuzz_mode(
    operation: Any, strategy: Any, base_url: str, headers: dict[str, str], examples: int, report: dict, seeded: bool
) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is recorded, not minimised
        suppress_health_check=list(HealthCheck),
        derandomize=seeded,  # the test: the same cases every run; the bench's --random: new ones each time
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        report["cases"] += 1
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=60)
        except Exception as err:  # noqa: BLE001 - a dropped connection is a crash from the client's side
            report["failures"].append({"operation": operation.label, "error": f"{type(err).__name__}: {err}"})
            return
        if response.status_code >= 500:
            report["failures"].append(
                {"operation": operation.label, "status": response.status_code, "body": response.text[:300]}
            )

    with contextlib.suppress(Unsatisfiable):  # nothing to make invalid (no parameters, no body)
        run()


def fuzz_service(hub: RunningHub, service: str, token: str, examples: int, seeded: bool = True) -> dict[str, Any]:
    import schemathesis

    headers = {"Authorization": f"token {token}"}
    schema = schemathesis.openapi.from_url(f"{hub.url}/services/{service}/openapi.json", headers=headers)
    report: dict[str, Any] = {"operations": 0, "cases": 0, "failures": []}
    for result in schema.get_all_operations():
        operation = result.ok()
        report["operations"] += 1
        fuzz_operation(operation, hub.url, headers, examples, report, seeded)
    health = httpx.get(f"{hub.url}/services/{service}/health", timeout=30)
    report["alive_after"] = health.status_code == 200
    return report


def fuzz_all(hub: RunningHub, examples: int, seeded: bool = True) -> dict[str, Any]:
    """Fuzz every service as an ordinary user; the totals and per-service reports."""
    token = hub.ensure_user(FUZZ_USER)
    started = time.monotonic()
    per_service = {service: fuzz_service(hub, service, token, examples, seeded) for service in SERVICES}
    failures = [dict(item, service=name) for name, report in per_service.items() for item in report["failures"]]
    return {
        "fuzz_operations": sum(report["operations"] for report in per_service.values()),
        "fuzz_cases": sum(report["cases"] for report in per_service.values()),
        "fuzz_server_errors": len(failures),
        "fuzz_services_alive": all(report["alive_after"] for report in per_service.values()),
        "fuzz_examples_per_operation": examples,
        "fuzz_seconds": round(time.monotonic() - started, 1),
        "fuzz_by_service": {
            name: {key: report[key] for key in ("operations", "cases", "alive_after")}
            for name, report in per_service.items()
        },
        "fuzz_failures": failures[:20],
    }


def merge_result(path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Read-merge-write: other benches (the isolation work's escape_attempts/escape_succeeded) share this file."""
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except json.JSONDecodeError:
            current = {}
    merged = current | values
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(merged, indent=2) + "\n")
    temporary.replace(path)  # atomic: a reader never sees half a file
    return merged


def result_values(summary: dict[str, Any]) -> dict[str, Any]:
    return summary | {
        "fuzz_tool": f"schemathesis {versions(['schemathesis']).get('schemathesis')}",
        "fuzz_command": command_line(),
        "fuzz_machine": machine_info(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=20, help="valid and invalid requests per operation, each")
    parser.add_argument("--random", action="store_true", help="new cases each run (default: the test's fixed ones)")
    args = parser.parse_args()
    with running_hub() as hub:
        summary = fuzz_all(hub, args.examples, seeded=not args.random)
    merge_result(RESULTS, result_values(summary))
    print(json.dumps({key: summary[key] for key in summary if key != "fuzz_failures"}, indent=2))
    if summary["fuzz_server_errors"]:
        print(json.dumps(summary["fuzz_failures"], indent=2))
        sys.exit(1)


if __name__ == "__main__":
    main()
