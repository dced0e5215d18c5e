"""A person's first visit: log in through the hub, land in JupyterLab, see the OpenLedger kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import chromium, hub_login
from tests.hub_harness import RunningHub
from tests.lab_ui import menu

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_login_reaches_lab_with_openledger_kernel(platform: RunningHub, artifacts_dir: Path) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        hub_login(page, platform.url, "bob", platform.secrets.user_password)
        # The hub spawns the server on first login and redirects into JupyterLab, on the welcome notebook.
        page.locator(".lm-TabBar-tabLabel", has_text="00-welcome.ipynb").first.wait_for(timeout=120_000)
        assert "/user/bob/lab" in page.url
        menu(page, "File", "New Launcher")
        card = page.locator(".jp-LauncherCard", has_text="OpenLedger (Python 3)").first
        card.wait_for(state="visible", timeout=30_000)
        page.screenshot(path=str(artifacts_dir / "lab-launcher.png"))


def test_wrong_password_is_refused(platform: RunningHub) -> None:
    with chromium() as browser:
        page = browser.new_page()
        hub_login(page, platform.url, "bob", "not-the-password")
        page.wait_for_selector("text=Invalid username or password", timeout=30_000)
        assert "/hub/login" in page.url
