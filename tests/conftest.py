"""Shared fixtures. `platform` starts the real hub, proxy, services and anvil once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_harness import RunningHub, start_platform, stop_platform

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="session", autouse=True)
def snapshot_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """dn.load() caches snapshots; keep the tests' copies out of the home directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENLEDGER_CACHE", str(tmp_path_factory.mktemp("openledger-cache")))
        yield


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    directory = tmp_path_factory.mktemp("platform")
    hub, process = start_platform(directory)
    try:
        yield hub
    finally:
        stop_platform(hub.settings, process)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
