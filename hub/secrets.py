"""Secrets generated at first start into `<data_dir>/secrets/` (mode 0600), never committed."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HubSecrets:
    directory: Path
    cookie_secret_file: Path
    proxy_auth_token: str
    user_password: str  # the shared password of non-admin users (workshops, dev)
    admin_password: str  # admins log in with this one (JupyterHub requires 32+ chars)
    admin_api_token: str  # the `openledger-admin` service's token: workshop CLI, tests
    instance_id: str  # names the OS accounts this hub creates, so it never takes over another's


def read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path`, written there (mode 0600) from `make()` the first time.

    O_EXCL makes creation atomic: two processes starting together both end up reading the one value written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(make() + "\n")
    return path.read_text().strip()


def _secret_file(directory: Path, name: str, make: Callable[[], str], configured: str = "") -> str:
    """A secret of the hub; a value configured in the settings replaces the stored one."""
    path = directory / name
    if configured:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(configured)
        return configured
    return read_or_create_secret(path, make)


HUB_SECRET_NAMES = (
    "jupyterhub_cookie_secret",
    "proxy_auth_token",
    "user_password",
    "admin_password",
    "admin_api_token",
)


def _move_old_hub_secrets(data_dir: Path, directory: Path) -> None:
    """Older versions kept the hub's secrets beside the services' keys in <data_dir>/secrets: move them to the hub's
    own folder (the services' account owns the old one)."""
    for name in HUB_SECRET_NAMES:
        old, new = data_dir / "secrets" / name, directory / name
        if old.is_file() and not new.exists():
            os.replace(old, new)


def ensure_secrets(data_dir: Path, shared_password: str = "") -> HubSecrets:
    """The hub's secrets in <data_dir>/hub/secrets (mode 0700, files 0600); only the hub (root) reads them."""
    directory = data_dir / "hub" / "secrets"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory.parent, 0o700)
    os.chmod(directory, 0o700)
    _move_old_hub_secrets(data_dir, directory)
    cookie_file = directory / "jupyterhub_cookie_secret"
    _secret_file(directory, cookie_file.name, lambda: secrets.token_hex(32))
    return HubSecrets(
        directory=directory,
        cookie_secret_file=cookie_file,
        proxy_auth_token=_secret_file(directory, "proxy_auth_token", lambda: secrets.token_hex(32)),
        # Readable words are easier to type in a workshop than hex; 12 chars is plenty for a dev hub.
        user_password=_secret_file(directory, "user_password", lambda: secrets.token_urlsafe(9), shared_password),
        admin_password=_secret_file(directory, "admin_password", lambda: secrets.token_urlsafe(32)),
        admin_api_token=_secret_file(directory, "admin_api_token", lambda: secrets.token_hex(32)),
        instance_id=_secret_file(directory, "instance_id", lambda: secrets.token_hex(4)),
    )
