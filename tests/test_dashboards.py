"""The Voila dashboards: a contributor and a model owner in headless Chromium through the real hub, and the
dashboard code on fake platform data (empty accounts, errors shown as messages, HTML escaped).

In the browser: log in through the hub's form, open `/hub/spawn/<name>/dashboards` (the hub creates and starts the
user's `dashboards` named server, which opens on the contributor dashboard), upload a bad and a good JSONL file through
the FileUpload widget, see the submission listed, claim rewards settled on anvil, and save screenshots under
`tests/artifacts/`. Also: paths outside the curated folder are refused without starting a kernel, another user's
dashboards server is refused by the hub, and the model owner dashboard renders for a user with no models.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

import openledger_sdk
from extensions.dashboards_lib.common import friendly, html_table, open_amount
from extensions.dashboards_lib.contributor import ContributorDashboard, earnings_figure
from extensions.dashboards_lib.model_owner import ModelOwnerDashboard, combine, revenue_figure
from openledger_sdk import OpenLedgerError
from openledger_sdk.datanets import ContributionRejected
from openledger_sdk.rewards import ClaimResult, Pending
from tests.browser import chromium, hub_login
from tests.hub_harness import RunningHub

API = "/services/platform/api"
USER = "dash-carol"
OTHER = "dash-dave"
PAYER = "dash-payer"
VIEWPORT = {"width": 1280, "height": 1800}  # Voila scrolls inside the page: full_page screenshots stop at the viewport
RENDER_MS = 180_000  # first spawn + first kernel on a busy 2-core machine


def dashboard_url(hub: RunningHub, user: str, notebook: str) -> str:
    return f"{hub.url}/user/{user}/dashboards/voila/render/{notebook}"


@contextmanager
def logged_in_page(hub: RunningHub, user: str, **page_options: Any) -> Iterator[Page]:
    """A Chromium page logged in to the hub as `user` through its form: where every browser test here starts."""
    with chromium() as browser:
        page = browser.new_page(**page_options)
        hub_login(page, hub.url, user, hub.password(user))
        page.wait_for_load_state()
        yield page


def open_dashboard(page: Page, hub: RunningHub, user: str, notebook: str) -> None:
    """Through the hub's spawn page: creates the named server on first use, then opens the notebook.

    Known flake, not understood yet (CI twice, never locally): the render of an already-running dashboards server
    never completes while the JupyterLab page the login landed on is still booting (its API calls interleave with
    the render in the hub log; the kernel ran the notebook, and Voila's response never ended). So the test first
    leaves JupyterLab, and a render that times out is reloaded once, with the hub log tail as a warning in the
    test report; a second timeout fails with it."""
    target = f"/user/{user}/dashboards/voila/render/{notebook}"
    page.goto("about:blank")
    for attempt in (1, 2):
        # Voila answers only once the notebook has run, after the server's first spawn: allow the render time.
        try:
            page.goto(f"{hub.url}/hub/spawn/{user}/dashboards?next={target}", timeout=RENDER_MS)
            page.wait_for_selector(".ol-dash .widget-button", timeout=RENDER_MS)  # widgets drawn, not "Loading widget"
            break
        except PlaywrightTimeoutError as exc:  # say what the hub and the server were doing, for the next reader
            tail = "\n".join(hub.log_file.read_text(errors="replace").splitlines()[-80:])
            report = f"{notebook} did not render for {user} (try {attempt}); last lines of {hub.log_file}:\n{tail}"
            if attempt == 2:
                raise AssertionError(report) from exc
            warnings.warn(report, stacklevel=2)
            page.goto("about:blank")
    assert page.url.endswith(target), page.url


def choose_file(page: Page, name: str, content: bytes) -> None:
    """Through the FileUpload button: its <input type=file> is never attached to the page, so answer the chooser."""
    with page.expect_file_chooser() as chooser:
        page.locator(".widget-upload").click()
    chooser.value.set_files(files=[{"name": name, "mimeType": "application/x-ndjson", "buffer": content}])
    expect(page.get_by_text(f"{name} ({len(content):,} bytes) is ready to send")).to_be_visible()


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


# --- the real thing: hub, dashboards server, Chromium -------------------------------------------------------------


@dataclass
class Contributor:
    token: str
    address: str
    datanet: str
    claimable_wei: int


def wait_for_ledger(hub: RunningHub, token: str) -> None:
    deadline = time.monotonic() + 90
    with hub.as_token(token) as client:
        while (answer := client.get(f"{API}/ledger")).status_code == 503:  # the chain comes up after the platform
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
        assert answer.status_code == 200, answer.text


def settle_rewards(hub: RunningHub, payer: str, owner: str, contributor: str, epochs: int) -> None:
    """`epochs` settled epochs, each with one paid inference whose fee is split between `owner` and `contributor`
    (written into the platform's database as the OpenLoRA service does, like tests/test_rewards_e2e.py)."""
    from hub.db import make_engine, session_scope
    from hub.rewards.config import RewardSettings
    from hub.rewards.metering import record_inference

    engine = make_engine(hub.settings.database_url)
    try:
        for epoch in range(epochs):
            with session_scope(engine) as session:
                record_inference(
                    session,
                    request_id=f"dash-{uuid.uuid4().hex}",
                    model="dash-model",
                    model_owner=owner,
                    payer=payer,
                    prompt_tokens=600 + 200 * epoch,
                    completion_tokens=400,
                    price_per_1k_wei=10**18,
                    shares={contributor: 1},
                    top_examples=[{"datanet": "dash", "version": 1, "row_id": epoch}],
                    settings=RewardSettings(),
                )
            with hub.admin() as admin:
                settled = admin.post(f"{API}/admin/settle", json={"wait_s": 60})
            assert settled.status_code == 200 and settled.json()["status"] == "settled", settled.text
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def contributor(platform: RunningHub) -> Contributor:
    token = platform.ensure_user(USER)
    wait_for_ledger(platform, token)
    ol = openledger_sdk.connect(platform.url, token)
    address = ol.wallet.address
    datanet = f"dash-notes-{uuid.uuid4().hex[:6]}"
    ol.datanets.create(datanet, schema={"prompt": "str", "response": "str"}, summary="Carol's notes")
    platform.ensure_user(PAYER)
    with platform.admin() as admin:  # the faucet also makes the payer's wallet, which metering needs
        funded = admin.post(f"{API}/admin/faucet", json={"user": PAYER, "open": "10", "eth": "1"})
        assert funded.status_code == 200, funded.text
    # Carol owns the model and her rows were credited: both kinds of earnings show in her plot.
    settle_rewards(platform, PAYER, address, address, epochs=2)
    claimable = ol.rewards.pending().claimable_wei
    assert claimable > 0
    return Contributor(token, address, datanet, claimable)


@pytest.mark.e2e
@pytest.mark.browser
def test_contributor_uploads_sees_the_submission_and_claims(
    platform: RunningHub, contributor: Contributor, artifacts_dir: Path
) -> None:
    with logged_in_page(platform, USER, viewport=VIEWPORT) as page:
        started = time.monotonic()
        open_dashboard(page, platform, USER, "contributor.ipynb")
        print(f"spawn + first render: {time.monotonic() - started:.1f} s")
        expect(page.get_by_text(f"{open_amount(contributor.claimable_wei)} claimable now")).to_be_visible()
        expect(page.locator(".ol-dash .widget-output img")).to_have_count(1)  # the earnings plot
        expect(page.get_by_text("No submissions yet")).to_be_visible()
        expect(page.locator(".ol-table", has_text=contributor.datanet)).to_be_visible()  # my datanets
        page.screenshot(path=str(artifacts_dir / "dashboard-contributor.png"), full_page=True)

        contribute = page.get_by_role("button", name="Contribute")
        page.get_by_label("Datanet").select_option(label=f"{contributor.datanet} (yours)")
        bad = [{"prompt": "What is a datanet?", "response": "A licensed dataset."}, {"prompt": "no response"}]
        choose_file(page, "bad.jsonl", jsonl(bad))
        contribute.click()
        expect(page.get_by_text("Rejected, nothing was stored")).to_be_visible(timeout=60_000)
        expect(page.locator(".ol-table td", has_text="response")).not_to_have_count(0)  # line 2's problem
        page.screenshot(path=str(artifacts_dir / "dashboard-contributor-rejected.png"), full_page=True)

        good = [{"prompt": f"Question {i} about datanets?", "response": f"Answer number {i}."} for i in range(3)]
        choose_file(page, "notes.jsonl", jsonl(good))
        contribute.click()
        expect(page.get_by_text("Accepted: 3 row(s) from notes.jsonl")).to_be_visible(timeout=60_000)
        row = page.locator(".ol-table tr", has_text="notes.jsonl")
        expect(row).to_contain_text(contributor.datanet)
        expect(row).to_contain_text("pending")
        page.screenshot(path=str(artifacts_dir / "dashboard-contributor-uploaded.png"), full_page=True)

        page.get_by_role("button", name="Claim").click()
        expect(page.get_by_text(f"Claimed {open_amount(contributor.claimable_wei)}")).to_be_visible(timeout=90_000)
        expect(page.get_by_text("Nothing to claim right now")).to_be_visible()
        page.screenshot(path=str(artifacts_dir / "dashboard-contributor-claimed.png"), full_page=True)

    ol = openledger_sdk.connect(platform.url, contributor.token)
    assert ol.rewards.pending().claimable_wei == 0
    (submission,) = ol.datanets.get(contributor.datanet).submissions(mine=True)  # the rejected file stored nothing
    assert (submission["filename"], submission["rows"], submission["status"]) == ("notes.jsonl", 3, "pending")


@pytest.mark.e2e
@pytest.mark.browser
def test_model_owner_dashboard_for_a_user_without_models(
    platform: RunningHub, contributor: Contributor, artifacts_dir: Path
) -> None:
    with logged_in_page(platform, USER, viewport=VIEWPORT) as page:
        open_dashboard(page, platform, USER, "model_owner.ipynb")
        expect(page.get_by_text("You have not published a model yet")).to_be_visible()
        expect(page.get_by_text("No models yet, so no requests or revenue.")).to_be_visible()
        expect(page.locator(".ol-msg-error")).to_have_count(0)
        page.screenshot(path=str(artifacts_dir / "dashboard-model-owner-empty.png"), full_page=True)


def dashboards_running(hub: RunningHub, user: str) -> None:
    with hub.admin() as admin:
        answer = admin.post(f"/hub/api/users/{user}/servers/dashboards")
        assert answer.status_code in (201, 202, 400), answer.text  # 400: already running
        deadline = time.monotonic() + 120
        while not admin.get(f"/hub/api/users/{user}").json()["servers"].get("dashboards", {}).get("ready"):
            assert time.monotonic() < deadline, f"{user}'s dashboards server did not start; see {hub.log_file}"
            time.sleep(0.25)


def raw_get(hub: RunningHub, token: str, path: str) -> int:
    """GET with the path sent as is: httpx and browsers remove `..` segments before sending, an attacker need not."""
    address = urlsplit(hub.url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=60)
    try:
        connection.request("GET", path, headers={"Authorization": f"token {token}"})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.e2e
def test_only_the_curated_notebooks_render(platform: RunningHub, contributor: Contributor) -> None:
    dashboards_running(platform, USER)
    base = f"/user/{USER}/dashboards"
    outside = Path(__file__).resolve().parents[1] / "templates" / "notebooks" / "00-welcome.ipynb"
    with platform.as_token(contributor.token) as client:
        kernels = {kernel["id"] for kernel in client.get(f"{base}/api/kernels").json()}
        for path in (
            "../../templates/notebooks/00-welcome.ipynb",
            "..%2F..%2Ftemplates%2Fnotebooks%2F00-welcome.ipynb",
            "%2E%2E/%2E%2E/templates/notebooks/00-welcome.ipynb",
            str(outside),  # absolute: still resolved inside the root
            "00-welcome.ipynb",  # the user's home (the normal server's root) is not this server's root
            ".ipynb_checkpoints/contributor-checkpoint.ipynb",  # hidden
        ):
            assert raw_get(platform, contributor.token, f"{base}/voila/render/{path}") in (403, 404), path
        for path in ("voila/files/../../README.md", "voila/files/..%2F..%2FREADME.md", "lab", "terminals/1"):
            assert raw_get(platform, contributor.token, f"{base}/{path}") in (403, 404), path  # no Lab, no terminals
        started = {kernel["id"] for kernel in client.get(f"{base}/api/kernels").json()} - kernels
        assert not started, "a refused path started a kernel"
        assert client.get(f"{base}/voila/render/contributor.ipynb").status_code == 200


@pytest.mark.e2e
@pytest.mark.browser
def test_another_users_dashboards_are_refused(platform: RunningHub, contributor: Contributor) -> None:
    dashboards_running(platform, USER)
    url = dashboard_url(platform, USER, "contributor.ipynb")
    with platform.as_token(platform.ensure_user(OTHER)) as client:
        assert client.get(url).status_code == 403
    with logged_in_page(platform, OTHER) as page:
        answer = page.goto(url)
        assert answer is not None and answer.status == 403, (answer and answer.status, page.url)
        assert page.locator(".widget-button").count() == 0


# --- the dashboard code on fake platform data (no hub) -----------------------------------------------------------


class FakeDatanet:
    def __init__(self, name: str, owner: str, role: str | None, submissions: list[dict[str, Any]]) -> None:
        self.name, self.owner, self.latest_version = name, owner, None
        self.info = {"name": name, "owner": owner, "your_role": role, "visibility": "public", "approval": "owner"}
        self._submissions = submissions
        self.contributed: list[bytes] = []
        self.reject_with: ContributionRejected | None = None

    def submissions(self, *, mine: bool = False) -> list[dict[str, Any]]:
        assert mine
        return self._submissions

    def contribute(self, path: Path) -> dict[str, Any]:
        if self.reject_with is not None:
            raise self.reject_with
        self.contributed.append(path.read_bytes())
        return {"id": 7, "datanet": self.name, "status": "pending", "rows": 2}


class Namespace:
    def __init__(self, **methods: Any) -> None:
        self.__dict__.update(methods)


class FakeClient:
    """What the dashboards call on `openledger_sdk.Client`, with canned answers (callables may raise)."""

    def __init__(self, datanets: list[FakeDatanet], credits: list[dict[str, Any]], claimable: int = 0) -> None:
        self.datanets_list = datanets
        self.revenue: dict[str, dict[str, Any]] = {}
        self.pending = Pending(claimable, "0xroot", 2 if credits else None, [], credits)
        self.wallet = Namespace(info=lambda: {"address": "0x" + "ab" * 20, "balances": {"OPEN": "0", "ETH": "0"}})
        self.datanets = Namespace(list=lambda: self.datanets_list, get=self._datanet)
        self.rewards = Namespace(pending=lambda: self.pending, claim=self._claim)
        self.models = Namespace(list=lambda mine: [{"name": name} for name in self.revenue])

    def whoami(self) -> dict[str, Any]:
        return {"name": "carol", "admin": False, "groups": []}

    def _datanet(self, name: str) -> FakeDatanet:
        return next(datanet for datanet in self.datanets_list if datanet.name == name)

    def _claim(self) -> ClaimResult:
        paid = self.pending.claimable_wei
        self.pending = Pending(0, "0xroot", 2, [], self.pending.epochs)
        claim = {"address": "0x" + "ab" * 20, "amount": str(paid), "status": "confirmed", "tx_hash": "0xfeed"}
        return ClaimResult(paid, [claim] if paid else [{**claim, "status": "nothing to claim", "tx_hash": None}])

    def request(self, method: str, service: str, path: str, params: dict[str, Any] | None = None) -> Any:
        if path == "api/rewards/epochs":
            return [{"epoch": 1, "closed_at": "2026-11-20T10:00:00+00:00"}, {"epoch": 2, "closed_at": None}]
        name = path.split("/")[2]
        return self.revenue[name]


def credit(epoch: int, contributor: str, owner: str = "0", in_root: bool = True) -> dict[str, Any]:
    amount = str(int(contributor) + int(owner))
    return {"epoch": epoch, "amount": amount, "as_contributor": contributor, "as_owner": owner, "in_root": in_root}


def text_of(*widgets: Any) -> str:
    return "".join(widget.value for widget in widgets)


def upload(dashboard: ContributorDashboard, name: str, content: bytes) -> None:
    dashboard.upload.value = (
        {
            "name": name,
            "type": "",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": datetime.now(UTC),
        },
    )


def test_contributor_dashboard_shows_everything_escaped_and_claims() -> None:
    hostile = "<img src=x onerror=alert(1)>"
    mine = FakeDatanet("notes", "carol", "owner", [])
    theirs = FakeDatanet(
        "handbook",
        "demo",
        None,
        [{"id": 3, "datanet": "handbook", "filename": "a.jsonl", "rows": 4, "status": "rejected", "reason": hostile}],
    )
    client = FakeClient(
        [theirs, mine], [credit(1, "500000000000000000"), credit(2, "0", "2" + "0" * 18, False)], 10**18
    )
    dashboard = ContributorDashboard(client)
    dashboard.refresh()
    assert "<b>1 OPEN</b> claimable now" in dashboard.claimable.value and not dashboard.claim_button.disabled
    assert "Earned so far: 2.5 OPEN over 2 epochs. 2 OPEN of it becomes claimable" in dashboard.earned.value
    assert hostile not in dashboard.submissions_table.value and "&lt;img src=x" in dashboard.submissions_table.value
    assert dashboard.target.options[0] == ("notes (yours)", "notes") and dashboard.target.value == "notes"
    assert "notes" in dashboard.datanets_table.value and "handbook" not in dashboard.datanets_table.value
    assert dashboard.contribute_button.disabled  # no file yet

    upload(dashboard, "../../etc/rows.jsonl", b'{"a": 1}\n')
    assert not dashboard.contribute_button.disabled
    dashboard.contribute()
    assert mine.contributed == [b'{"a": 1}\n']
    assert "Accepted: 2 row(s) from rows.jsonl are submission #7 to notes" in dashboard.upload_status.value
    assert dashboard.upload.value == () and dashboard.progress.bar_style == "success"

    dashboard.claim()
    assert "Claimed 1 OPEN, paid to 0xabab" in dashboard.claim_status.value and "0xfeed" in dashboard.claim_status.value
    assert "Nothing to claim right now" in dashboard.claimable.value and dashboard.claim_button.disabled
    dashboard.claim()
    assert "Nothing to claim: everything credited to you so far has been paid." in dashboard.claim_status.value


def test_contributor_dashboard_lists_each_rejected_line() -> None:
    datanet = FakeDatanet("notes", "carol", "owner", [])
    datanet.reject_with = ContributionRejected(
        "POST /services/platform/api/datanets/notes/files → 422: 1 of 2 rows rejected\n  line 2: missing field",
        422,
        [{"line": 2, "error": "missing required field 'response'"}],
    )
    dashboard = ContributorDashboard(FakeClient([datanet], []))
    dashboard.refresh()
    upload(dashboard, "bad.jsonl", b"{}\n{}\n")
    dashboard.contribute()
    status = dashboard.upload_status.value
    assert "Rejected, nothing was stored: 1 of 2 rows rejected" in status and "POST /services" not in status
    assert "<td>2</td><td>missing required field &#x27;response&#x27;</td>" in status
    assert dashboard.progress.bar_style == "danger"

    def private(name: str) -> FakeDatanet:
        raise OpenLedgerError(f"GET /services/platform/api/datanets/{name} → 403: {name!r} is private", 403)

    dashboard.client.datanets.get = private
    dashboard.contribute()
    assert "Could not contribute bad.jsonl: &#x27;notes&#x27; is private" in dashboard.upload_status.value


def test_a_new_user_sees_friendly_empty_states() -> None:
    client = FakeClient([FakeDatanet("handbook", "demo", None, [])], [])
    dashboard = ContributorDashboard(client)
    dashboard.refresh()
    assert "Nothing to claim right now" in dashboard.claimable.value and dashboard.claim_button.disabled
    assert "No rewards yet" in dashboard.earned.value
    assert "No submissions yet" in dashboard.submissions_table.value
    assert "You have no datanet of your own yet" in dashboard.datanets_table.value
    owner = ModelOwnerDashboard(client)
    owner.refresh()
    assert "You have not published a model yet" in owner.models_table.value
    assert "No models yet, so no requests or revenue." in owner.totals.value
    assert not text_of(owner.status, owner.models_status, owner.revenue_status)  # no errors


def test_errors_become_messages_never_tracebacks() -> None:
    client = FakeClient([], [])

    def starting() -> Pending:
        raise OpenLedgerError("GET /services/platform/api/rewards/pending → 503: the chain is starting", 503)

    def broken() -> list[FakeDatanet]:
        raise KeyError("internal detail")

    client.rewards.pending = starting
    client.datanets.list = broken
    dashboard = ContributorDashboard(client)
    dashboard.refresh()
    rewards, lists = dashboard.rewards_status.value, dashboard.submissions_status.value
    assert "Could not load your rewards: The platform is not ready yet (the chain is starting)" in rewards
    assert "Something went wrong (KeyError)" in lists and "internal detail" not in lists
    assert "Traceback" not in rewards + lists

    def unreachable() -> dict[str, Any]:
        raise OpenLedgerError("cannot reach http://hub (ConnectError: refused)")

    client.whoami = unreachable
    dashboard = ContributorDashboard(client)
    dashboard.refresh()
    assert "Could not load your account: cannot reach http://hub" in dashboard.status.value
    assert friendly(ValueError("x")).startswith("Something went wrong (ValueError)")


def test_model_owner_dashboard_combines_revenue_of_all_my_models() -> None:
    alice, bob = "0x" + "a1" * 20, "0x" + "b2" * 20

    def report(day: str, requests: int, fees: int, owner: int, parts: dict[str, int]) -> dict[str, Any]:
        totals = {"requests": requests, "tokens": 10 * requests, "fees": str(fees), "owner": str(owner)}
        totals |= {"contributors": str(sum(parts.values())), "protocol": "0", "unpaid": "0"}
        return {
            "per_day": [{"date": day, "requests": requests, "fees": str(fees), "owner": str(owner)}],
            "totals": totals,
            "top_contributors": [{"address": a, "amount": str(v)} for a, v in parts.items()],
        }

    client = FakeClient([], [])
    client.revenue = {
        "bot-a": report("2026-11-24", 3, 3 * 10**18, 10**18, {alice: 10**18}),
        "bot-b": report("2026-11-25", 1, 10**18, 5 * 10**17, {alice: 10**17, bob: 4 * 10**17}),
    }
    dashboard = ModelOwnerDashboard(client)
    dashboard.refresh()
    assert "bot-a" in dashboard.models_table.value and "bot-b" in dashboard.models_table.value
    assert "4 requests, 40 tokens in the last 30 days: your share 1.5 OPEN, fees paid 4 OPEN" in dashboard.totals.value
    table = dashboard.contributors_table.value
    assert table.index(alice[-4:]) < table.index(bob[-4:]) and "73.3%" in table  # 1.1 of 1.5 OPEN
    dashboard.model_choice.value = "bot-b"
    assert "1 requests" in dashboard.totals.value

    combined = combine(client.revenue.values())
    figure = revenue_figure(combined["per_day"])
    assert figure is not None and len(figure.axes[0].patches) == 2  # one bar per day
    assert revenue_figure({}) is None


def test_earnings_plot_stacks_roles_per_epoch() -> None:
    figure = earnings_figure([credit(2, "1" + "0" * 18, "3" + "0" * 18), credit(1, "2" + "0" * 18)], {1: "2026-11-20"})
    assert figure is not None
    bars = figure.axes[0].patches  # contributor bars for epochs 1, 2 then owner bars stacked on top
    assert [bar.get_height() for bar in bars] == [2.0, 1.0, 0.0, 3.0]
    assert list(figure.axes[1].lines[0].get_ydata()) == [2.0, 6.0]
    assert earnings_figure([], {}) is None
    assert html_table(["a"], [], "nothing") == '<p class="ol-empty">nothing</p>'
    assert open_amount(Decimal(1)) == "< 0.000001 OPEN" and open_amount(10**24) == "1,000,000 OPEN"
