"""Child processes that do not outlive the process that started them.

The hub starts its services, and the chain service starts anvil. A parent killed with SIGKILL (a test run's hard
timeout, an OOM kill, a second Ctrl-C) runs no cleanup, so without this its children live on holding their ports,
and the next `make run` or test session cannot start.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux; elsewhere a no-op).

    Call it in the child: as a Popen `preexec_fn`, or first thing in a service's main."""
    if sys.platform != "linux":
        return
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def exec_with_parent(argv: list[str]) -> None:
    """`python -m hub.lifecycle PROGRAM ARGS...`: run PROGRAM in this process (same pid, so pid files stay right),
    set to get SIGTERM when the process that started it dies. For children that cannot ask for it themselves:
    configurable-http-proxy (node) and the idle culler, which would otherwise outlive a SIGKILLed hub."""
    if not argv:
        raise SystemExit("usage: python -m hub.lifecycle PROGRAM [ARGS...]")
    die_with_parent()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    exec_with_parent(sys.argv[1:])
