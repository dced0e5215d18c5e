"""Fault suite: kill parts of the platform by pid, let it recover by itself, compare database and chain.

    .venv/bin/python bench/faults.py                      # every scenario (about 10 minutes on 2 cores)
    .venv/bin/python bench/faults.py --only fast          # the ones `make test` runs too (tests/test_faults.py)
    .venv/bin/python bench/faults.py --only hub_sigkill,launcher_sigterm

Each scenario runs on an instance of its own (ports and data dir from a settings file of its own) and reports
`recovery_s` (from the kill until the part is back: anvil answering, the standby signing, a new hub up, the client
told of the dead stream), `writes_lost` (confirmed in the database, missing on chain) and `writes_doubled` (on chain
more than once). Writes bench/results/faults.json with the command, the CPU model and the machine's load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import faults_chain, faults_hub  # noqa: E402
from bench.hub_bench import command_line, machine_info, write_result  # noqa: E402
from tests.postgres import postgres_bin, temporary_postgres  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "faults.json"


def _with_postgres(directory: Path) -> dict[str, Any]:
    if postgres_bin() is None:
        return {"skipped": "PostgreSQL server binaries are not installed"}
    with temporary_postgres() as url:
        return faults_chain.relay_leader_sigkill(directory, url)


SCENARIOS: dict[str, tuple[bool, Callable[[Path], dict[str, Any]], str]] = {
    # name: (fast, run, what happens)
    "anvil_sigkill": (True, faults_chain.anvil_sigkill, "SIGKILL the embedded anvil right after writes confirmed"),
    "chain_rewind": (True, faults_chain.chain_rewind, "the chain drops the blocks of confirmed writes (a reorg)"),
    "relay_leader_sigkill": (True, _with_postgres, "SIGKILL the relay leader; a standby on the same PostgreSQL"),
    "hub_sigkill": (False, faults_hub.hub_sigkill, "SIGKILL JupyterHub under the launcher"),
    "launcher_sigterm": (False, faults_hub.launcher_sigterm, "SIGTERM the launcher: all stopped within 10 s"),
    "relaunch_after_sigkill": (False, faults_hub.relaunch_after_sigkill, "SIGKILL launcher and hub, start again"),
    "openlora_dies_mid_stream": (False, faults_hub.openlora_dies_mid_stream, "SIGKILL OpenLoRA during a stream"),
}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def run(names: list[str]) -> dict[str, Any]:
    """Run the named scenarios, each in a fresh temp dir; the result document."""
    results: dict[str, Any] = {}
    for name in names:
        _, scenario, what = SCENARIOS[name]
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as directory:
            Path(directory).chmod(0o711)  # a multi-user hub's service account must pass through it
            try:
                outcome = scenario(Path(directory))
            except Exception as err:  # noqa: BLE001 - a failed scenario is a result, the others still run
                outcome = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
        outcome |= {"what": what, "took_s": round(time.monotonic() - started, 1)}
        results[name] = outcome
        print(f"{name}: {outcome}", flush=True)
    lost = sum(int(r.get("writes_lost", 0)) for r in results.values())
    doubled = sum(int(r.get("writes_doubled", 0)) for r in results.values())
    return {
        "command": command_line(),
        "cpu_model": cpu_model(),
        "machine": machine_info(),
        "scenarios": results,
        "writes_lost": lost,
        "writes_doubled": doubled,
        "failed_scenarios": [name for name, r in results.items() if "error" in r],
        "recovery_s": {name: r.get("recovery_s") for name, r in results.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="'fast', or a comma list of scenario names")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.only == "fast":
        names = [name for name, (fast, _, _) in SCENARIOS.items() if fast]
    elif args.only:
        names = [name.strip() for name in args.only.split(",")]
        unknown = sorted(set(names) - SCENARIOS.keys())
        if unknown:
            parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    else:
        names = list(SCENARIOS)
    result = run(names)
    write_result(args.out, result)
    print(f"writes lost {result['writes_lost']}, doubled {result['writes_doubled']}; wrote {args.out}")
    return 0 if not result["failed_scenarios"] and result["writes_lost"] == result["writes_doubled"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
