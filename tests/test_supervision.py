"""Supervision end to end, through `python -m hub.launcher` as `make run` starts it (bench/faults.py scenarios on an
instance each): a SIGKILLed hub takes its proxy and culler with it and comes back; SIGTERM stops everything within
10 s with no process left; after SIGKILL of everything a second start comes up cleanly; a client streaming through
the proxy learns within 5 s that OpenLoRA died, and the half answer is not charged."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import faults_hub

pytestmark = pytest.mark.e2e


@pytest.fixture
def instance_dir() -> Iterator[Path]:
    # Not under pytest's 0700 temp root: a multi-user hub's service account must pass through the folder.
    directory = Path(tempfile.mkdtemp(prefix="openledger-faults-"))
    directory.chmod(0o711)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def assert_stopped_cleanly(result: dict) -> None:
    assert result["exit_code"] == 0 and result["stop_s"] < faults_hub.STOP_LIMIT_S, result
    assert result["orphans"] == 0, result


def test_a_killed_hub_comes_back_alone_and_sigterm_stops_everything(instance_dir: Path) -> None:
    result = faults_hub.hub_sigkill(instance_dir)
    print(result)
    assert result["proxy_and_culler_gone_after_s"] < 5, result
    assert result["recovery_s"] < 240, result
    assert_stopped_cleanly(result)


def test_a_second_start_after_sigkill_of_everything_comes_up(instance_dir: Path) -> None:
    result = faults_hub.relaunch_after_sigkill(instance_dir)
    print(result)
    assert result["first_run_left_running"] == 0, result
    assert_stopped_cleanly(result)


def test_a_stream_through_the_proxy_ends_within_5_s_when_openlora_dies(instance_dir: Path) -> None:
    result = faults_hub.openlora_dies_mid_stream(instance_dir)
    print(result)
    assert result["recovery_s"] is not None and result["recovery_s"] < 5, result
    assert result["half_answers_charged"] == 0, result
    assert_stopped_cleanly(result)
