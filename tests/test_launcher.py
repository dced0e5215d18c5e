"""Bad input at start: each problem is one clear line and exit code 2, nothing started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hub import paths
from hub.launcher import PreflightError, preflight
from hub.settings import REPO_ROOT, SettingsError, load_settings
from tests.hub_harness import write_settings


def run_check(settings_file: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub.launcher", "--check"],
        env=dict(os.environ, OPENLEDGER_CONFIG=str(settings_file), **env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("openledger: ")
    for needle in needles:
        assert needle in lines[0]


def test_repo_settings_file_loads_with_defaults() -> None:
    settings = load_settings(REPO_ROOT / "openledger.toml")
    assert settings.hub.port == 8000
    assert settings.data_dir == REPO_ROOT / ".openledger-data"
    assert settings.database_url.startswith("sqlite:///")
    assert (settings.models.serve_device, settings.models.serve_dtype) == ("cpu", "auto")


def test_env_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLEDGER_HUB__PORT", "8123")
    monkeypatch.setenv("OPENLEDGER_SPAWNER__REQUIRE_GPU", "true")
    settings = load_settings(REPO_ROOT / "openledger.toml")
    assert settings.hub.port == 8123
    assert settings.spawner.require_gpu is True


def test_good_settings_pass_the_check(tmp_path: Path) -> None:
    result = run_check(write_settings(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "checks passed" in result.stdout


def test_missing_settings_file(tmp_path: Path) -> None:
    assert_one_clear_line(run_check(tmp_path / "nope.toml"), "not found", "OPENLEDGER_CONFIG")


def test_broken_toml(tmp_path: Path) -> None:
    broken = tmp_path / "openledger.toml"
    broken.write_text("[hub\nport = 8000\n")
    assert_one_clear_line(run_check(broken), "not valid TOML", str(broken))


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[hub]\nport = 'eighty'\n", "hub.port"),
        ("[hub]\nport = 70000\n", "hub.port"),
        ("[spawner]\nuser_isolation = 'docker'\n", "spawner.user_isolation"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ("[models]\nserve_dtype = 'int4'\n", "models.serve_dtype"),
        ("[models]\nserve_device = 'tpu'\n", "models.serve_device"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, content: str, needle: str) -> None:
    bad = tmp_path / "openledger.toml"
    bad.write_text(content)
    assert_one_clear_line(run_check(bad), "invalid", needle)
    with pytest.raises(SettingsError):
        load_settings(bad)


def test_invalid_env_override(tmp_path: Path) -> None:
    result = run_check(write_settings(tmp_path), OPENLEDGER_HUB__PORT="abc")
    assert_one_clear_line(result, "hub.port")


def test_port_in_use(tmp_path: Path) -> None:
    settings_file = write_settings(tmp_path)
    port = load_settings(settings_file).hub.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run_check(settings_file)
    assert_one_clear_line(result, f"port {port}", "in use", "OPENLEDGER_HUB__PORT")


def test_missing_npm_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(write_settings(tmp_path))
    monkeypatch.setattr(paths, "NODE_MODULES", tmp_path / "empty_node_modules")
    with pytest.raises(PreflightError, match=r"configurable-http-proxy is not installed: run `npm ci`"):
        preflight(settings)
