"""The launcher's watch over JupyterHub: restart it when it dies, leave nothing behind, stop within 10 s.

- Every child of the hub that cannot ask for it itself is started through `hub.lifecycle` (the proxy, the culler) or
  calls `die_with_parent` (the services, anvil), so a hub that dies, even by SIGKILL, takes them with it; the hub in
  turn dies with the launcher.
- The launcher is a child subreaper: what still outlives the hub (a user's server) is re-parented to it, and a stop
  ends it too.
- Leftovers of an earlier run that was killed as a whole are reaped from the pid files in the data dir before the
  port checks of the next start.
- SIGTERM / SIGINT only raise `StopRequested` in the main thread; the stop itself runs there, never inside a handler
  (a handler that waited on the hub while the main thread waited too deadlocked the launcher).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.launcher import HubProcess, PreflightError, banner, start_hub, wait_until_ready
from hub.settings import Settings

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
FIRST_START_TRIES = 3  # a hub that never came up is given up after this many starts
STOP_BUDGET_S = 9.0  # SIGTERM to everything gone, under the 10 s an operator waits
# Pid files JupyterHub writes in the data dir, and what the process's command line must contain to be ours.
PID_FILES = {"jupyterhub.pid": "jupyterhub", "proxy.pid": "configurable-http-proxy"}


class StopRequested(Exception):
    """SIGTERM or Ctrl-C: stop everything and exit."""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def terminate(pids: list[int], timeout: float) -> None:
    """SIGTERM each pid, wait up to `timeout` for all to go, SIGKILL what is left."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        _reap_zombies(pids)
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
    _reap_zombies(pids)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap_zombies(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):  # not our child (an earlier run's): init reaps it
            os.waitpid(pid, os.WNOHANG)


def reap_leftovers(data_dir: Path) -> list[int]:
    """Stop the hub and proxy of an earlier run still named in the data dir's pid files; the pids stopped."""
    found = [pid for pid in reap_candidates(data_dir) if pid != os.getpid()]
    if found:
        print(f"openledger: stopping processes of an earlier run: {found}", file=sys.stderr, flush=True)
        terminate(found, timeout=5)
    return found


def reap_candidates(data_dir: Path) -> list[int]:
    """Live pids from the data dir's pid files whose command line is still the expected program (a pid reused by
    another program is left alone)."""
    pids = []
    for name, needle in PID_FILES.items():
        try:
            pid = int((data_dir / name).read_text().strip())
        except (OSError, ValueError):
            continue
        if _alive(pid) and needle in _cmdline(pid):
            pids.append(pid)
    return pids


def _children() -> list[tuple[int, str]]:
    """(pid, state) of every process whose parent is this one (orphans re-parented to us included)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:
            found.append((int(entry.name), fields[0]))
    return found


def own_children(exclude: int | None = None) -> list[int]:
    """Live children, but `exclude`."""
    return [pid for pid, state in _children() if state != "Z" and pid != exclude]


def reap_orphans(exclude: int | None = None) -> None:
    """Collect the exit status of orphans re-parented to us (the subreaper): until then they stay zombies, whose pid
    still "exists", and JupyterHub refuses to start while its old proxy's pid does. `exclude`: the hub, which its
    Popen collects."""
    _reap_zombies([pid for pid, state in _children() if state == "Z" and pid != exclude])


class HubSupervisor:
    def __init__(
        self,
        settings: Settings,
        log_file: Path,
        start: Callable[[Settings, Path], HubProcess] = start_hub,
        max_backoff: float = 30.0,
    ) -> None:
        self.settings, self.log_file, self._start = settings, log_file, start
        self.max_backoff = max_backoff
        self.hub: HubProcess | None = None
        self.restarts = 0
        self._stopping = False

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if not self._stopping:  # a second Ctrl-C during the stop changes nothing
            self._stopping = True
            raise StopRequested(signal.Signals(signum).name)

    def run(self) -> int:
        if sys.platform == "linux":
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        try:
            return self._supervise()
        except (StopRequested, KeyboardInterrupt):
            return 0
        finally:
            self.stop()

    def _supervise(self) -> int:
        backoff = 1.0
        ever_ready, failed_starts = False, 0
        while True:
            self.hub = self._start(self.settings, self.log_file)
            try:
                wait_until_ready(self.hub)
            except PreflightError:
                failed_starts += 1
                if not ever_ready and failed_starts >= FIRST_START_TRIES:
                    raise  # never came up: a configuration problem, said in one line by main()
            else:
                if not ever_ready:
                    print(banner(self.settings), flush=True)
                ever_ready, backoff = True, 1.0
            while self.hub.popen.poll() is None:
                reap_orphans(exclude=self.hub.popen.pid)  # e.g. a user's server that exited after the hub restarted
                time.sleep(0.5)
            code = self.hub.popen.returncode
            print(
                f"openledger: the hub exited with code {code}; restarting it in {backoff:.0f} s (see {self.log_file})",
                file=sys.stderr,
                flush=True,
            )
            self._clean_after_hub()
            time.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
            self.restarts += 1

    def _clean_after_hub(self) -> None:
        """What the dead hub left: its proxy (pid file) and anything re-parented to us but user servers, which the
        next hub adopts from its database."""
        time.sleep(0.5)  # its proxy and culler get SIGTERM as it dies (hub.lifecycle): let them exit, then reap
        reap_orphans()
        reap_leftovers(self.settings.hub_dir)
        reap_orphans()

    def stop(self) -> None:
        """Stop the hub (it stops the proxy, services and user servers), then whatever is still ours."""
        self._stopping = True
        started = time.monotonic()
        hub = self.hub
        if hub is not None:
            hub.stop(timeout=STOP_BUDGET_S - 2)
        left = max(0.5, STOP_BUDGET_S - (time.monotonic() - started))
        terminate(own_children() + reap_candidates(self.settings.hub_dir), timeout=min(left, 2))
