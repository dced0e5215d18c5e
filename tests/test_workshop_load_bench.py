"""The workshop load bench, cut down to two students against the session hub: every stage works and is reported."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench.hub_bench import machine_info
from bench.workshop_load import Limits, result_document, workshop_round
from hub.datanets.demo_data import DEMO_NAME
from tests.hub_harness import RunningHub

pytestmark = pytest.mark.e2e

STAT_FIELDS = {"n", "p50", "p95", "max"}


@pytest.fixture(scope="module")
def two_students(platform: RunningHub) -> dict:
    return asyncio.run(workshop_round(platform, 2, prefix="wltest"))


def test_every_student_gets_through_every_stage(two_students: dict) -> None:
    assert two_students["failures"] == 0, two_students["failure_details"]
    for run in two_students["students"]:
        assert run["spawn_s"] > 0 and run["cell_s"] > 0 and run["chat_s"] > 0
        assert run["cell_output"]["user"] == run["user"]
        assert DEMO_NAME in run["cell_output"]["datanets"]
        assert run["chat_reply"].strip()


def test_round_summary_has_the_reported_fields(two_students: dict) -> None:
    for name in ("spawn_to_ready_s", "cell_s", "chat_s"):
        assert set(two_students[name]) == STAT_FIELDS
        assert two_students[name]["n"] == 2
        assert two_students[name]["p50"] <= two_students[name]["p95"] <= two_students[name]["max"]
    assert two_students["users"] == 2 and two_students["wall_s"] > 0
    assert two_students["failure_details"] == [] and two_students["cleanup_problems"] == []


def test_round_starts_and_ends_cold(platform: RunningHub, two_students: dict) -> None:
    with platform.admin() as admin:
        for run in two_students["students"]:
            assert admin.get(f"/hub/api/users/{run['user']}").status_code == 404


def test_result_document_is_json_with_command_machine_and_versions(platform: RunningHub, two_students: dict) -> None:
    document = json.loads(json.dumps(result_document(platform, [two_students], Limits(), machine_info())))
    assert document["command"].startswith("python ")
    assert document["ks"] == [2]
    assert document["machine"]["cpu_count"] >= 1 and len(document["machine"]["load_average_1_5_15"]) == 3
    assert document["versions"]["jupyterhub"] and document["versions"]["python"]
    assert document["hub_limits"]["JupyterHub.concurrent_spawn_limit"] >= 0
