"""The hub configuration derived from settings: authenticator, spawner, services, roles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config import Config

from hub.hub_config import configure
from hub.secrets import ensure_secrets
from hub.settings import load_settings
from tests.hub_harness import write_settings


def configured(tmp_path: Path, **sections: dict) -> Config:
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = load_settings(write_settings(tmp_path, **sections))
    config = Config()
    configure(config, settings, ensure_secrets(settings.data_dir, settings.hub.shared_password))
    return config


def test_per_user_passwords_by_default(tmp_path: Path) -> None:
    config = configured(tmp_path)
    assert config.JupyterHub.authenticator_class == "hub.passwords.OpenLedgerAuthenticator"
    auth = config.OpenLedgerAuthenticator
    assert len(auth.admin_password) >= 32 and auth.demo_password != auth.admin_password
    # The shared demo password opens the demo accounts only; everyone else has a password of their own.
    assert auth.demo_users == {"alice", "bob"}
    assert auth.password_file.startswith(str(tmp_path)) and "/hub/secrets/" in auth.password_file


@pytest.mark.parametrize("name", ["github", "generic-oauth"])
def test_oauthenticator_is_selectable(tmp_path: Path, name: str) -> None:
    assert configured(tmp_path, hub={"authenticator": name}).JupyterHub.authenticator_class == name


def test_configured_demo_password_is_used(tmp_path: Path) -> None:
    config = configured(tmp_path, hub={"shared_password": "workshop-2026"})
    assert config.OpenLedgerAuthenticator.demo_password == "workshop-2026"


def test_isolation_follows_the_hubs_rights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    config = configured(tmp_path / "root", spawner={"require_gpu": True, "mem_limit": "2G", "max_processes": 64})
    # As root (`make run` on a shared host): one OS account per user, services under their own account.
    assert config.JupyterHub.spawner_class == "gpu_spawner.spawner.GPUSpawner"
    assert config.GPUSpawner.mem_limit == 2 << 30 and config.GPUSpawner.max_processes == 64
    assert config.GPUSlotMixin.require_gpu is True
    platform = next(s for s in config.JupyterHub.services if s["name"] == "platform")
    assert platform["user"] == "openledger" and platform["environment"]["HOME"].endswith("service-home")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    dev = configured(tmp_path / "dev")
    # Not root: single-user developer mode; only the developer's user and the admins may start a server.
    assert dev.JupyterHub.spawner_class == "gpu_spawner.spawner.SharedUserGPUSpawner"
    assert dev.SharedUserGPUSpawner.allowed_users == ["alice", "admin"]
    assert all("user" not in s for s in dev.JupyterHub.services)


def test_spawns_at_once_are_limited_by_cpu_cores(tmp_path: Path) -> None:
    # A class logging in together: each server start costs seconds of CPU, so past a few per core they would all
    # hit the start timeout together; the hub refuses the extra ones with "try again" (429) instead.
    assert configured(tmp_path / "a").JupyterHub.concurrent_spawn_limit == 4 * (os.cpu_count() or 1)
    config = configured(tmp_path / "b", spawner={"concurrent_spawn_limit": 50})
    assert config.JupyterHub.concurrent_spawn_limit == 50


def test_culler_service_and_role_follow_the_timeout(tmp_path: Path) -> None:
    on = configured(tmp_path / "on", services={"cull_idle_timeout": 600})
    assert any(s["name"] == "idle-culler" and "--timeout=600" in s["command"] for s in on.JupyterHub.services)
    assert any(role["name"] == "idle-culler" for role in on.JupyterHub.load_roles)
    off = configured(tmp_path / "off", services={"cull_idle_timeout": 0})
    assert all(s["name"] != "idle-culler" for s in off.JupyterHub.services)


def test_secrets_are_private_and_stable(tmp_path: Path) -> None:
    first = ensure_secrets(tmp_path)
    second = ensure_secrets(tmp_path)
    assert first == second
    for path in first.directory.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


def test_sdk_imports_without_torch_or_web3() -> None:
    code = "import sys, openledger_sdk; bad = {'torch', 'web3', 'transformers'} & set(sys.modules); print(sorted(bad))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
