"""Shared by the benches that run against the real hub: start it in a temp dir, describe the machine, save JSON."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.hub_harness import RunningHub, start_platform, stop_platform

VERSIONED = ("jupyterhub", "jupyter_server", "ipykernel", "httpx", "websockets", "torch", "transformers")


@contextmanager
def running_hub(**sections: dict) -> Iterator[RunningHub]:
    """The real hub, proxy, services and anvil on free ports in a throwaway data dir (the tests' harness)."""
    with tempfile.TemporaryDirectory() as directory:
        hub, process = start_platform(Path(directory), **sections)
        try:
            yield hub
        finally:
            stop_platform(hub.settings, process)


def command_line() -> str:
    """The command that is running, as one could paste it again (relative to the repo root)."""
    return shlex.join(["python", *sys.argv])


def versions(names: Sequence[str] = VERSIONED) -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine_info() -> dict[str, Any]:
    """Enough to judge a timing: the machine is shared, so the load average matters as much as the cores."""
    return {
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": [round(load, 2) for load in os.getloadavg()],
        "platform": platform.platform(),
    }


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear-interpolated percentile (fraction in 0..1); None when there are no values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def write_result(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
