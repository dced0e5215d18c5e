"""Per-server resource limits, so one student cannot starve the class.

Where the host has cgroups (v1 `memory` + `pids`, or v2), each server gets a group of its own below the hub's:
memory and process count are then limits on the whole server (kernels, terminals, their children). Without
cgroups the fallback is per-process: RLIMIT_AS caps each process's address space, RLIMIT_NPROC the account's
process count (one account per user, so it is per user).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import resource
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'4G', '512M', '1.5GiB', '0' (no limit) → bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size: use a number with K, M, G or T, e.g. '4G' (0: no limit)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _own_cgroup(controller: str) -> str | None:
    """This process's cgroup path for `controller` ('' for the v2 unified hierarchy), from /proc/self/cgroup."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controller in controllers.split(",") or (controller == "" and controllers == ""):
                return path
    return None


@dataclass(frozen=True)
class ServerLimits:
    """The limits of one server: the cgroup folders it joins, or (without cgroups) rlimits."""

    memory_bytes: int
    max_processes: int
    memory_cgroup: Path | None = None  # where the memory limit and its OOM counter live
    groups: tuple[Path, ...] = ()  # every cgroup folder the server joins

    def env(self) -> dict[str, str]:
        """What the kernel needs to explain a kill: the limit and where the OOM counter is."""
        env = {"OPENLEDGER_MEM_LIMIT": str(self.memory_bytes)}
        if self.memory_cgroup is not None:
            env["OPENLEDGER_MEM_CGROUP"] = str(self.memory_cgroup)
        return env

    def apply_in_child(self) -> None:
        """Run in the server's process between fork and exec, still as root: join the groups, set rlimits."""
        for path in self.groups:
            (path / "cgroup.procs").write_text(str(os.getpid()))
        if self.memory_bytes and self.memory_cgroup is None:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes))
        if self.max_processes:
            # Per real uid, so it holds for the whole account even where no pids cgroup exists.
            resource.setrlimit(resource.RLIMIT_NPROC, (self.max_processes, self.max_processes))


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError as err:
        log.warning("cannot set %s to %s: %s", path, value, err)
        return False


def _group(controller_root: Path, own: str, group: str, settings: dict[str, str]) -> Path | None:
    """Create `openledger/<group>` below this process's cgroup and write `settings` into it; None if impossible."""
    path = controller_root / own.lstrip("/") / "openledger" / group
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        log.warning("cannot create cgroup %s: %s", path, err)
        return None
    return path if all(_write(path / name, value) for name, value in settings.items()) else None


def create_limits(group: str, memory_bytes: int, max_processes: int) -> ServerLimits:
    """Make (or update) cgroup `openledger/<group>` below the hub's own groups; rlimits where that is impossible."""
    memory_group: Path | None = None
    groups: list[Path] = []
    v1_memory, v1_pids, unified = _own_cgroup("memory"), _own_cgroup("pids"), _own_cgroup("")
    if v1_memory is not None and (CGROUP_ROOT / "memory").is_dir():
        if memory_bytes:
            memory_group = _group(
                CGROUP_ROOT / "memory", v1_memory, group, {"memory.limit_in_bytes": str(memory_bytes)}
            )
        if max_processes and v1_pids is not None and (CGROUP_ROOT / "pids").is_dir():
            groups += filter(None, [_group(CGROUP_ROOT / "pids", v1_pids, group, {"pids.max": str(max_processes)})])
    elif unified is not None and (CGROUP_ROOT / "cgroup.controllers").exists():
        settings = {"memory.max": str(memory_bytes or "max"), "pids.max": str(max_processes or "max")}
        memory_group = _group(CGROUP_ROOT, unified, group, settings)
    if memory_group is not None:
        groups.insert(0, memory_group)
    elif memory_bytes:
        log.warning("no memory cgroup for %s: falling back to RLIMIT_AS per process", group)
    return ServerLimits(memory_bytes, max_processes, memory_group, tuple(groups))


def oom_kills(cgroup: Path) -> int:
    """How many processes the kernel killed in this memory cgroup for exceeding its limit."""
    for name in ("memory.oom_control", "memory.events"):
        with contextlib.suppress(OSError):
            for line in (cgroup / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    return 0
