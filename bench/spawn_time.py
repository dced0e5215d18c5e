"""Spawn-to-kernel-ready time on the real hub, OpenLedger kernel vs the plain Python kernel (baseline).

    .venv/bin/python bench/spawn_time.py --runs 5

Each run: start the user's server through the REST API (timed until the hub reports it ready), then start a
kernel of each kind and time until it answers its first execute request. Writes bench/results/spawn_time.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hub_bench import machine_info, running_hub, versions, write_result  # noqa: E402
from tests.hub_harness import run_in_kernel  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "spawn_time.json"


def timed_kernel(hub, user: str, token: str, kernel: str) -> float:
    started = time.monotonic()
    run_in_kernel(hub, user, token, "pass", kernel=kernel)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"spawn_s": [], "openledger_kernel_s": [], "python3_kernel_s": []}
    with running_hub() as hub:
        for run in range(args.runs):
            user = f"bench{run}"
            token = hub.ensure_user(user)
            samples["spawn_s"].append(hub.spawn(user))
            # Interleave the two kernels so machine noise hits both alike.
            samples["openledger_kernel_s"].append(timed_kernel(hub, user, token, "openledger-python"))
            samples["python3_kernel_s"].append(timed_kernel(hub, user, token, "python3"))
            hub.stop_server(user)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    result = {
        "command": f"python bench/spawn_time.py --runs {args.runs}",
        "runs": args.runs,
        "samples": samples,
        "median": medians,
        "spawn_to_kernel_ready_s": medians["spawn_s"] + medians["openledger_kernel_s"],
        "openledger_vs_python3_kernel_ratio": medians["openledger_kernel_s"] / medians["python3_kernel_s"],
        "machine": machine_info(),
        "versions": versions(),
    }
    write_result(RESULTS, result)
    print(json.dumps(result["median"], indent=2))
    print(
        f"spawn to kernel ready: {result['spawn_to_kernel_ready_s']:.1f} s; "
        f"kernel start ratio openledger/python3: {result['openledger_vs_python3_kernel_ratio']:.2f}"
    )


if __name__ == "__main__":
    main()
