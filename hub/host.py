"""Lay out a multi-user host before the hub starts (the hub runs as root): the service account and who owns what.

| path under the data dir | owner, mode | who needs it |
| --- | --- | --- |
| `.` | service account, 0711 | users' servers pass through it to `models/` only |
| `hub/` (secrets, hub database, pid files, hub log) | root, 0700 | the hub alone |
| `models/` (converted base models) | root, 0755 | kernels load the base model for fine-tuning |
| `archived-homes/` | root, 0700 | homes of removed users |
| everything else (databases, blobs, key store, chain state, logs) | service account, 0700 / 0600 | the services |

Services run as the service account; user servers as their own accounts (gpu_spawner.accounts), so no user's
process can read another's files, the services' data or the hub's secrets.
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from gpu_spawner.accounts import AccountError, run_account_tool
from hub.settings import REPO_ROOT, Settings

SERVICE_MARKER = "openledger service account"
ROOT_ONLY = ("hub", "archived-homes", "homes")
# Where older versions kept the hub's files: moved into hub/ at the next start.
OLD_HUB_FILES = ("jupyterhub.sqlite", "jupyterhub.pid", "proxy.pid", "gpu-slots.json")
READABLE = ("models",)
SERVICE_DIRS = ("secrets", "chain", "logs", "relay", "tmp", "service-home")


class HostSetupError(Exception):
    """The host cannot be laid out for a multi-user hub; the message says what to do."""


@dataclass(frozen=True)
class ServiceAccount:
    name: str
    uid: int
    gid: int


def ensure_service_account(name: str) -> ServiceAccount:
    """The system account the services run as, created once; an account of that name made by someone else is refused."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        try:
            run_account_tool(["useradd", "--system", "-U", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", "-c",
                  SERVICE_MARKER, name])  # fmt: skip
        except AccountError as err:
            raise HostSetupError(str(err)) from None
        entry = pwd.getpwnam(name)
    if entry.pw_gecos != SERVICE_MARKER:
        raise HostSetupError(
            f"the OS account {name!r} exists and was not created by OpenLedger: choose another with "
            "[services] run_as, or remove that account"
        )
    return ServiceAccount(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _own_tree(top: Path, uid: int, gid: int, dir_mode: int, file_mode: int | None) -> None:
    """chown (and chmod) a tree without following symlinks; file_mode None keeps files' modes but drops g/o bits."""
    for root, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            path = os.path.join(root, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                os.lchown(path, uid, gid)
                continue
            os.chown(path, uid, gid)
            if stat.S_ISDIR(info.st_mode):
                os.chmod(path, dir_mode)
            else:
                os.chmod(path, file_mode if file_mode is not None else stat.S_IMODE(info.st_mode) & 0o700)
    os.chown(top, uid, gid)
    os.chmod(top, dir_mode)


def _check_reachable(path: Path, account: str) -> None:
    """Every folder above `path` must let others pass (x), or the service account cannot reach its data."""
    for parent in path.resolve().parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise HostSetupError(
                f"{parent} is not traversable by other accounts, so the service account {account!r} cannot reach "
                f"{path}: run `chmod o+x {parent}` or choose paths.data_dir elsewhere"
            )


def _check_python_runnable(account: str) -> None:
    """The services and user servers run this venv's interpreter under their own accounts."""
    interpreter = Path(os.path.realpath(sys.executable))
    for parent in interpreter.parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise HostSetupError(
                f"the venv's Python ({interpreter}) is inside {parent}, which other accounts cannot enter, so the "
                f"service account {account!r} and the users cannot run it: recreate the venv from a system Python "
                "(rm -rf .venv && make install)"
            )


def secure_data_dir(data_dir: Path, account: ServiceAccount) -> None:
    """Give the data dir to the service account, keep the hub's part root-only and the base models readable."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in (*ROOT_ONLY, *READABLE, *SERVICE_DIRS):
        (data_dir / name).mkdir(exist_ok=True)
    for child in data_dir.iterdir():
        if child.name in ROOT_ONLY:
            _own_tree(child, 0, 0, 0o700, None)
        elif child.name in READABLE:
            _own_tree(child, 0, 0, 0o755, 0o644)
        elif child.is_dir() and not child.is_symlink():
            _own_tree(child, account.uid, account.gid, 0o700, None)
        else:
            os.lchown(child, account.uid, account.gid)
            if not child.is_symlink():
                os.chmod(child, 0o600)
    os.chown(data_dir, account.uid, account.gid)
    os.chmod(data_dir, 0o711)


def move_old_hub_files(data_dir: Path) -> None:
    hub_dir = data_dir / "hub"
    hub_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in OLD_HUB_FILES:
        old = data_dir / name
        if old.is_file() and not (hub_dir / name).exists():
            os.replace(old, hub_dir / name)


def prepare_host(settings: Settings) -> ServiceAccount | None:
    """For a multi-user hub (isolation "system"): the service account and the data dir's owners. None otherwise."""
    move_old_hub_files(settings.data_dir)
    if settings.isolation != "system":
        return None
    if os.geteuid() != 0:
        raise HostSetupError(
            "spawner.user_isolation = 'system' needs the hub to start as root (sudo make run); "
            "or use 'auto' for single-user developer mode"
        )
    account = ensure_service_account(settings.services.run_as)
    _check_reachable(settings.data_dir, account.name)
    _check_reachable(REPO_ROOT / "hub", account.name)
    _check_python_runnable(account.name)
    secure_data_dir(settings.data_dir, account)
    return account
