"""The first ten minutes, in Chromium: a newcomer logs in, runs notebooks 00 -> 05 through JupyterLab's own menus
(not papermill), trains and publishes from the fine-tune panel, asks the model, sees the attribution, opens both
dashboards; no request may leave 127.0.0.1 (the pages work offline).

Each step is timed into tests/artifacts/first_run.json (`bench/first_run.py` copies a run's figures into
bench/results/first_run.json). Training uses the hub's tiny random base model, not SmolLM2: the real model's
training takes minutes on this CPU and its quality is measured by `bench/first_run.py --real-model`. So here the
model's answers are noise; what is checked is that every step works for a user, end to end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser import chromium, hub_login
from tests.hub_harness import RunningHub, start_platform, stop_platform
from tests.lab_ui import menu, open_notebook, run_all, wait_kernel_idle

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
USER = "alice"  # a demo user: the demo password, and the welcome grant like every newcomer
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
NOTEBOOK_S = 300  # per notebook, on a busy 2-core machine


class Steps:
    """Times each step; a failed step is recorded (with a screenshot) and the test fails at the end."""

    def __init__(self, page: Page, artifacts: Path) -> None:
        self.page, self.artifacts = page, artifacts
        self.seconds: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.started = time.monotonic()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        except Exception as err:  # noqa: BLE001 - recorded, shown at the end with every other failure
            self.failed[name] = f"{type(err).__name__}: {err}"[:2000]
        finally:
            self.seconds[name] = round(time.monotonic() - began, 2)
            self.page.screenshot(path=str(self.artifacts / f"first-run-{name}.png"))

    def report(self, **extra: object) -> dict:
        return {
            "total_seconds": round(time.monotonic() - self.started, 2),
            "steps_failed": len(self.failed),
            "steps": self.seconds,
            "failures": self.failed,
            **extra,
        }


@pytest.fixture(scope="module")
def first_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    # A hub of its own: the welcome grant on (the shared test hub has it off: other tests count OPEN exactly).
    hub, process = start_platform(tmp_path_factory.mktemp("first-run"), chain={"welcome_grant": "20"})
    try:
        yield hub
    finally:
        stop_platform(hub.settings, process)


def use_tiny_base(hub: RunningHub, user: str) -> str:
    """Point the user's copy of notebook 03 at the hub's tiny base model (the one OpenLoRA serves here)."""
    base = hub.settings.data_dir / "models" / "tiny-base"
    for path in [base, *base.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the user's kernel reads it, as it reads the real one
    notebook = hub.home(user) / "03-finetune-lora.ipynb"
    text = notebook.read_text()
    assert '"base = \\"smollm2-135m-instruct\\"' in text
    stat = notebook.stat()
    notebook.write_text(text.replace('"base = \\"smollm2-135m-instruct\\"', f'"base = \\"{base}\\"'))
    os.chown(notebook, stat.st_uid, stat.st_gid)
    return str(base)


def settle_while(hub: RunningHub, stop: threading.Event) -> None:
    """The instructor's part in a workshop: settle the epoch now and then, so notebook 05's record settles."""
    with hub.admin() as admin:
        while not stop.wait(5):
            admin.post("/services/platform/api/admin/settle", json={"wait_s": 30})


def test_first_ten_minutes(first_hub: RunningHub, artifacts_dir: Path) -> None:
    hub = first_hub
    leaving: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.on(
            "request",
            lambda r: (
                leaving.append(f"{r.url} (from {r.frame.url})")
                if urlparse(r.url).scheme in ("http", "https", "ws", "wss")
                and urlparse(r.url).hostname not in LOCAL_HOSTS
                else None
            ),
        )
        page = context.new_page()
        # Leaving a notebook that ran (unsaved outputs) asks "leave the page?": yes, as a person moving on would.
        page.on("dialog", lambda dialog: dialog.accept())
        steps = Steps(page, artifacts_dir)

        with steps.step("login"):
            page.goto(f"{hub.url}/hub/login")
            expect(page.locator("#openledger-title")).to_have_text("OpenLedger Notebooks")
            hub_login(page, hub.url, USER, hub.password(USER))
            # Lands in JupyterLab with the welcome notebook open, its kernel ours; no news toast.
            page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for(timeout=180_000)
            expect(page.locator(".lm-TabBar-tabLabel", has_text="00-welcome.ipynb")).to_be_visible()
            wait_kernel_idle(page, 120_000)
            expect(page.locator(".jp-Toast-content", has_text="news")).to_have_count(0)
            expect(page.locator(".lm-MenuBar-itemLabel", has_text="OpenLedger")).to_be_visible()

        printed: dict[str, str] = {}
        with steps.step("00-welcome"):  # already open: the landing page
            printed["00-welcome"] = run_all(page, NOTEBOOK_S)
        with steps.step("launcher"):
            menu(page, "File", "New Launcher")
            card = page.locator(".jp-LauncherCard", has_text="OpenLedger (Python 3)").first
            card.wait_for(timeout=30_000)
            assert card.locator("img").count() >= 1, "the OpenLedger kernel card has no logo"
            expect(page.locator(".jp-LauncherCard", has_text="Python 3 (ipykernel)")).to_have_count(0)

        for name in ("01-explore-datanets", "02-contribute-data"):
            with steps.step(name):
                open_notebook(page, f"{name}.ipynb")
                printed[name] = run_all(page, NOTEBOOK_S)
        with steps.step("00-grant"):
            assert "Signed in as alice" in printed.get("00-welcome", ""), printed.get("00-welcome")
            assert "20 OPEN" in printed["00-welcome"], printed["00-welcome"]  # the welcome grant
        with steps.step("02-published"):
            assert "version 1: 8 rows" in printed["02-contribute-data"], printed["02-contribute-data"]

        use_tiny_base(hub, USER)
        with steps.step("03-finetune-lora"):
            open_notebook(page, "03-finetune-lora.ipynb")
            printed["03"] = run_all(page, NOTEBOOK_S)
            assert "published alice-support-bot" in printed["03"], printed["03"]

        with steps.step("03-panel-train"):
            panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").last
            panel.locator("button", has_text="Train").click()
            expect(panel.locator(".widget-html", has_text="done:")).to_be_visible(timeout=NOTEBOOK_S * 1000)
            expect(panel.locator(".widget-label", has_text="took ")).to_be_visible()
        steps.seconds["finetune"] = steps.seconds["03-panel-train"]

        with steps.step("03-panel-publish"):
            publish = panel.locator("button", has_text="Publish")
            expect(publish).to_be_enabled()
            publish.click()
            expect(panel.locator("text=published")).to_be_visible(timeout=120_000)
            expect(publish).to_be_disabled()
            target = "%2Fuser%2Falice%2Fdashboards%2Fvoila%2Frender%2Fmodel_owner.ipynb"
            link = panel.locator("a", has_text="model-owner dashboard")
            expect(link).to_have_attribute("href", f"{hub.url}/hub/spawn/alice/dashboards?next={target}")
            expect(panel.locator("text=transaction")).to_be_visible(timeout=60_000)  # the registration's tx hash

        with steps.step("04-serve-with-openlora"):
            open_notebook(page, "04-serve-with-openlora.ipynb")
            printed["04"] = run_all(page, NOTEBOOK_S)
            assert "chatting with alice-" in printed["04"] and "A:" in printed["04"], printed["04"]
            assert "refused" not in printed["04"], printed["04"]  # the grant pays for the priced models

        stop = threading.Event()
        settler = threading.Thread(target=settle_while, args=(hub, stop), daemon=True)
        settler.start()
        with steps.step("05-attribution-and-rewards"):
            open_notebook(page, "05-attribution-and-rewards.ipynb")
            printed["05"] = run_all(page, NOTEBOOK_S)
            assert "attributed:" in printed["05"] and "contributor(s) credited" in printed["05"], printed["05"]
            assert "this record verifies: True" in printed["05"], printed["05"]
        stop.set()
        settler.join(60)

        for dashboard, label in (("contributor", "Contributor dashboard"), ("model_owner", "Model owner dashboard")):
            with steps.step(f"dashboard-{dashboard}"):
                with context.expect_page(timeout=30_000) as opened:
                    menu(page, "OpenLedger", label)
                tab = opened.value
                tab.wait_for_url(f"**/user/{USER}/dashboards/voila/render/{dashboard}.ipynb*", timeout=180_000)
                tab.locator(".ol-dash").first.wait_for(timeout=180_000)
                if dashboard == "model_owner":
                    expect(tab.locator(".ol-dash", has_text="alice-support-bot")).to_be_visible(timeout=60_000)
                tab.screenshot(path=str(artifacts_dir / f"first-run-dashboard-{dashboard}.png"), full_page=True)
                tab.close()

        with steps.step("offline"):
            assert leaving == [], f"requests left 127.0.0.1: {sorted(set(leaving))}"

        report = steps.report(finetune_seconds=steps.seconds["finetune"], base_model="tiny random Llama (tests)")
        (artifacts_dir / "first_run.json").write_text(json.dumps(report, indent=2) + "\n")
    assert not steps.failed, json.dumps(steps.failed, indent=2)


def wallet_open(hub: RunningHub, token: str, wait_s: float = 30) -> str:
    """The user's OPEN balance (base units) once the relay has confirmed everything it was given."""
    deadline = time.monotonic() + wait_s
    with hub.as_token(token) as client:
        while True:
            wallet = client.get("/services/platform/api/wallet").json()
            if wallet["balances"]["OPEN"] != "0" or time.monotonic() > deadline:
                return wallet["balances"]["OPEN"]
            time.sleep(0.5)


def test_welcome_grant_is_paid_once_and_only_to_oneself(first_hub: RunningHub) -> None:
    hub = first_hub
    grant = str(20 * 10**18)
    mallory, carol = hub.ensure_user("grant-mallory"), hub.ensure_user("grant-carol")
    with hub.as_token(mallory) as client:
        # Many first calls at once, then many more: one grant.
        threads = [threading.Thread(target=client.get, args=("/services/platform/api/me",)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for _ in range(3):
            assert client.get("/services/platform/api/me").status_code == 200
            assert client.get("/services/platform/api/wallet").status_code == 200
        # Reading another user's profile is refused and grants nobody anything.
        assert client.get("/services/platform/api/users/grant-carol").status_code == 403
    assert wallet_open(hub, mallory) == grant
    time.sleep(2)  # anything minted twice would be confirmed by now
    assert wallet_open(hub, mallory) == grant
    assert wallet_open(hub, carol) == grant  # carol's own first call: her grant, once, not one per asker
    # A service (the admin service's token) is not a user: no wallet, no grant.
    with hub.admin() as admin:
        assert admin.get("/services/platform/api/me").json()["kind"] == "service"
        assert admin.get("/services/platform/api/wallet").status_code == 403


def logged_in(hub: RunningHub, name: str) -> httpx.Client:
    """A client with the hub's login cookie, got through the login form as a browser does."""
    client = httpx.Client(base_url=hub.url, timeout=60)
    form = client.get("/hub/login")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form.text).group(1)
    answer = client.post("/hub/login", data={"username": name, "password": hub.password(name), "_xsrf": xsrf})
    assert answer.status_code == 302, answer.text
    return client


def test_dashboard_links_lead_to_ones_own_dashboards_only(first_hub: RunningHub) -> None:
    first_hub.ensure_user("link-user")
    client = logged_in(first_hub, "link-user")
    try:
        answer = client.get("/hub/openledger/dashboards/model_owner")
        assert answer.status_code == 302
        assert answer.headers["location"] == (
            "/hub/spawn/link-user/dashboards?next=%2Fuser%2Flink-user%2Fdashboards%2Fvoila%2Frender%2Fmodel_owner.ipynb"
        )
        # Only the curated dashboards: no path of the user's choosing reaches the redirect.
        for name in ("..%2F..%2Fadmin", "tree", "model_owner.ipynb%2F..%2F..%2Fsecret"):
            assert client.get(f"/hub/openledger/dashboards/{name}").status_code == 404
    finally:
        client.close()
    # Without a login: to the login page, nothing about anyone's server.
    anonymous = httpx.get(f"{first_hub.url}/hub/openledger/dashboards/contributor")
    assert anonymous.status_code == 302 and "/hub/login" in anonymous.headers["location"]
