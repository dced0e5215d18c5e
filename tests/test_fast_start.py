"""Fast, honest start: the OpenLoRA service binds its port within seconds and says `loading` until its model is in
memory (it used to load torch and the model first: 33-61 s of silence under load, past JupyterHub's 30 s wait), and
the hub's wait for each service comes from the settings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hub.hub_config import managed_services
from hub.secrets import ensure_secrets
from hub.settings import REPO_ROOT, load_settings
from tests.hub_harness import free_port, write_settings
from tests.tiny_model import shared_tiny_model


def test_openlora_answers_loading_at_once_then_ok(tmp_path: Path) -> None:
    port = free_port()
    config = write_settings(tmp_path, services={"openlora_port": port}, models={"base_model": str(shared_tiny_model())})
    load_settings(config).data_dir.mkdir(parents=True)  # the launcher's host setup makes it
    log = (tmp_path / "openlora.log").open("ab")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.openlora_service"],
        cwd=REPO_ROOT,
        env=dict(
            os.environ,
            OPENLEDGER_CONFIG=str(config),
            HF_HUB_OFFLINE="1",
            JUPYTERHUB_SERVICE_PREFIX="/services/openlora/",
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/services/openlora/health"
    try:
        first, answers = None, []
        while time.monotonic() - started < 120:
            try:
                answer = httpx.get(url, timeout=2)
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            first = first or time.monotonic() - started
            answers.append((answer.status_code, answer.json().get("status")))
            if answer.status_code == 200 or answer.json().get("status") == "error":
                break
            time.sleep(0.1)
        print(f"first answer after {first:.2f} s, ready after {time.monotonic() - started:.2f} s")
        assert first is not None and first < 5, answers  # listening before torch and the model are loaded
        assert answers[0] == (503, "loading"), answers
        assert answers[-1] == (200, "ok"), (tmp_path / "openlora.log").read_text()[-2000:]
        models = httpx.get(f"http://127.0.0.1:{port}/services/openlora/v1/models", timeout=5)
        assert models.status_code == 401  # the real app answers now (it asks for a hub token)
    finally:
        process.terminate()
        process.wait(20)


def test_the_hub_waits_for_services_as_long_as_the_settings_say(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path, services={"start_timeout": 420}))
    services = managed_services(settings, ensure_secrets(settings.data_dir))
    timeouts = {service["name"]: service.get("timeout") for service in services if "command" in service}
    assert timeouts["openlora"] == timeouts["platform"] == timeouts["chain"] == 420, timeouts
