"""Services and anvil die with the process that started them, even when it is SIGKILLed (no cleanup runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from hub.settings import REPO_ROOT

CHILD = "from hub.lifecycle import die_with_parent; die_with_parent(); import time; time.sleep(120)"
PARENT = f"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}])
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead, only not reaped yet
        return stat.read().split()[2] != "Z"


def test_a_child_dies_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    child = int(parent.stdout.readline())
    time.sleep(1.0)  # the child has made its request to the kernel
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the child outlived its SIGKILLed parent"
