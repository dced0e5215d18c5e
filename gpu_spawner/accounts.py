"""One OS account per hub user (the Littlest JupyterHub model): created at first spawn, never taken over.

A hub user `alice` runs as `<prefix>alice` (default `ol-alice`). The account's comment field (GECOS) records which hub
created it and for which hub user id, so that:
- an account that exists but was not made by this hub (a real person's login, another hub's student) is refused;
- an account left by a deleted hub user of the same name is handed to the new user only after the old home was
  archived (JupyterHub gives every new user a new id, so the id in the comment tells them apart).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MAX_NAME = 32  # useradd's limit on Debian
_SYSTEM_NAME = re.compile(r"^[a-z_][a-z0-9_-]*$")
MARKER = "openledger"


class AccountError(Exception):
    """An OS account cannot be used for a hub user; the message says why and what to do."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


def system_name(prefix: str, hub_name: str) -> str:
    """The OS account name for a hub user: prefix + name, shortened with a hash suffix to fit 32 characters."""
    name = prefix + hub_name.lower()
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(hub_name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9]}-{digest}"
    if not _SYSTEM_NAME.fullmatch(name):
        raise AccountError(
            f"hub user {hub_name!r} does not map to a valid OS account name ({name!r}: lower-case letters, digits, "
            "'-' and '_', starting with a letter or '_'); rename the user or change spawner.system_user_prefix"
        )
    return name


def marker(instance: str, hub_user_id: int) -> str:
    """The comment written into the accounts this hub creates."""
    return f"{MARKER}/{instance}/{hub_user_id}"  # ':' separates /etc/passwd fields: not allowed here


def _parse_marker(gecos: str) -> tuple[str, int] | None:
    parts = gecos.split("/")
    if len(parts) != 3 or parts[0] != MARKER or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def run_account_tool(command: list[str]) -> None:
    """Run useradd / usermod / userdel; a missing tool or a refusal is an AccountError saying what to do."""
    tool = shutil.which(command[0], path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if not tool:
        raise AccountError(
            f"{command[0]} not found: install it (Debian: apt-get install -y passwd) or run the hub as a non-root "
            "user in single-user developer mode"
        )
    result = subprocess.run([tool, *command[1:]], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AccountError(f"{command[0]} failed for {command[-1]!r}: {result.stderr.strip() or result.returncode}")


def archive_home(home: Path, archive_root: Path, label: str) -> Path | None:
    """Move a home out of the way (into `archive_root`) so a new owner starts empty; None if there was none."""
    if not home.exists():
        return None
    archive_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = archive_root / f"{label}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    shutil.move(str(home), str(target))
    return target


def ensure_account(
    name: str, *, instance: str, hub_user_id: int, home_root: Path, archive_root: Path, shell: str = "/bin/bash"
) -> Account:
    """The OS account `name` for hub user id `hub_user_id`, created if missing (home `home_root/name`, 0700).

    Refuses an account this hub did not create. An account this hub created for an earlier hub user of the same
    name (now deleted) gets its home archived first. The account's password stays locked: the only way in is the
    hub's own login and the Jupyter terminal.
    """
    home = home_root / name
    comment = marker(instance, hub_user_id)
    entry = _lookup(name)
    if entry is None:
        home_root.mkdir(parents=True, exist_ok=True)
        # -U: a group of its own; no supplementary groups; -M: the spawner creates and seeds the home itself.
        run_account_tool(["useradd", "-M", "-U", "-d", str(home), "-s", shell, "-c", comment, name])
        entry = pwd.getpwnam(name)
    else:
        owner = _parse_marker(entry.pw_gecos)
        if owner is None or owner[0] != instance:
            raise AccountError(
                f"the OS account {name!r} already exists and was not created by this hub: refusing to reuse it "
                "(rename the hub user, remove that account, or change spawner.system_user_prefix)"
            )
        if owner[1] != hub_user_id:
            # The account belonged to a deleted hub user of the same name: the newcomer must not inherit their files.
            archive_home(Path(entry.pw_dir), archive_root, name)
            run_account_tool(["usermod", "-c", comment, name])
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell)


def accounts_of(instance: str) -> list[str]:
    """Names of the OS accounts this hub instance created."""
    return [entry.pw_name for entry in pwd.getpwall() if (_parse_marker(entry.pw_gecos) or ("",))[0] == instance]


def processes_of(uid: int) -> list[int]:
    """The pids of every process running as `uid`."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                pids.append(int(pid))
        except FileNotFoundError:
            continue  # ended meanwhile
    return pids


def end_processes(uid: int) -> None:
    """SIGKILL every process of `uid` (servers the hub did not stop, their kernels, a student's `nohup` jobs)."""
    for pid in processes_of(uid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove_accounts(instance: str) -> list[str]:
    """Delete every OS account (and its group) this hub instance created, ending their processes first; homes are
    left to the caller."""
    removed = []
    for name in accounts_of(instance):
        end_processes(pwd.getpwnam(name).pw_uid)
        run_account_tool(["userdel", "--force", name])  # a zombie of the account (its parent gone) would block it
        removed.append(name)
    return removed
