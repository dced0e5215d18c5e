"""Tell the user, in the notebook, that their previous kernel was killed for using more memory than allowed.

The spawner puts each server in a memory cgroup and tells the kernel where (`OPENLEDGER_MEM_CGROUP`) and how
large the limit is (`OPENLEDGER_MEM_LIMIT`). A kernel killed there only shows "kernel died" in JupyterLab; the
next kernel compares the cgroup's OOM-kill counter with the last one it saw and says what happened at the first
cell it runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from IPython.core.interactiveshell import InteractiveShell

from gpu_spawner.limits import oom_kills

SEEN_FILE = Path.home() / ".openledger" / "oom-kills-seen"


def _format_bytes(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def memory_kill_message(limit_bytes: int, new_kills: int) -> str:
    limit = _format_bytes(limit_bytes) if limit_bytes else "its limit"
    return (
        f"OpenLedger: your previous kernel was stopped by the system because your server used more than {limit} of "
        f"memory ({new_kills} process(es) killed). Use a smaller batch size, model or dataset, free memory with "
        "`del` and `gc.collect()`, or ask your admin for a larger spawner.mem_limit."
    )


def _last_seen() -> int:
    with contextlib.suppress(OSError, ValueError):
        return int(SEEN_FILE.read_text().strip())
    return 0


def _remember(count: int) -> None:
    with contextlib.suppress(OSError):
        SEEN_FILE.parent.mkdir(parents=True, exist_ok=True)
        SEEN_FILE.write_text(str(count))


def register(shell: InteractiveShell) -> None:
    """Check once at kernel start; if kills happened since the last kernel, say so before the first cell runs."""
    cgroup = os.environ.get("OPENLEDGER_MEM_CGROUP")
    if not cgroup:
        return
    count = oom_kills(Path(cgroup))
    new_kills = count - _last_seen()
    _remember(count)
    if new_kills <= 0:
        return
    message = memory_kill_message(int(os.environ.get("OPENLEDGER_MEM_LIMIT", "0") or 0), new_kills)

    def warn_once(*_: object) -> None:
        print(message, file=sys.stderr)
        shell.events.unregister("pre_run_cell", warn_once)

    shell.events.register("pre_run_cell", warn_once)
