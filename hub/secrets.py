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
        path.write_text(configured)
        os.chmod(path, 0o600)
        return configured
    return read_or_create_secret(path, make)


def ensure_secrets(data_dir: Path, shared_password: str = "") -> HubSecrets:
    directory = data_dir / "secrets"
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
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
    )
