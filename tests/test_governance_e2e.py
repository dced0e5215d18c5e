"""Governance from a notebook, a dashboard and the workshop tools, on the real hub:

- template notebook 06 run by papermill as a student, again after each waiting period: delegate, propose (and see
  a bad proposal refused), vote, queue, execute;
- the proposals panel of the contributor dashboard in Chromium (screenshot under tests/artifacts/);
- a class vote by the workshop CLI, and another by the admin notebook (each student votes with their own wallet).

The admin moves the dev chain's clock (POST /api/admin/governance/advance) between steps instead of waiting.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

import openledger_sdk
from hub.workshop.cli import main as workshop
from tests.hub_harness import RunningHub
from tests.test_dashboards import VIEWPORT, logged_in_page, open_dashboard, wait_for_ledger
from tests.test_governance_api import advance
from tests.test_notebooks import run_notebook
from tests.test_workshop_notebook import cell_outputs, cell_with, run_admin_notebook

pytestmark = pytest.mark.e2e


@pytest.fixture
def hub_env(platform: RunningHub, monkeypatch: pytest.MonkeyPatch) -> RunningHub:
    monkeypatch.setenv("OPENLEDGER_CONFIG", str(platform.settings.settings_file))  # the CLI reads the hub's settings
    return platform


def run_06(platform: RunningHub, user: str, tmp_path: Path, run: int, **parameters: object) -> str:
    """Notebook 06 as `user`, the `run`-th time (each run in its own folder); what it printed."""
    out = tmp_path / str(run)
    out.mkdir()
    return run_notebook(platform, user, "06-governance.ipynb", out, **parameters)


@pytest.mark.browser
def test_notebook_06_and_the_dashboard_panel_through_a_whole_vote(
    platform: RunningHub, tmp_path: Path, artifacts_dir: Path
) -> None:
    user = f"gvnb-{uuid.uuid4().hex[:5]}"
    token = platform.ensure_user(user)
    wait_for_ledger(platform, token)
    platform.fund(user, "120")  # 100 votes: the quorum is 4% of all gOPEN, other tests hold some
    ol = openledger_sdk.connect(platform.url, token)
    rules = ol.governance.info()["rules"]
    price_before = ol.governance.parameters()["training_price_per_token"]
    description = f"Double the training price ({user})"
    changes = {"training_price": "0.00002"}

    printed = run_06(platform, user, tmp_path, 1, wrap="100")
    assert "votes 100" in printed and "as expected, refused" in printed
    assert "must be exactly 100, not 120" in printed  # a bad proposal: refused, nothing proposed
    advance(platform, 1)  # a proposer's votes count from the second before the proposal
    printed = run_06(platform, user, tmp_path, 2, wrap="0", propose=True, changes=changes, description=description)
    assert "proposed " in printed
    advance(platform, rules["voting_delay_s"] + 1)
    printed = run_06(platform, user, tmp_path, 3, wrap="0")
    assert f"voted for on {description!r}: for 100, against 0" in printed

    # The contributor dashboard's proposals panel shows the vote; a screenshot for people to look at.
    with logged_in_page(platform, user, viewport=VIEWPORT) as page:
        open_dashboard(page, platform, user, "contributor.ipynb")
        expect(page.get_by_text("Governance: the fee split you vote on")).to_be_visible(timeout=60_000)
        row = page.locator("tr", has_text=description)
        expect(row).to_contain_text("active")
        expect(row).to_contain_text("yes")  # you voted
        expect(page.get_by_text("Cap per contributor")).to_be_visible()
        page.screenshot(path=str(artifacts_dir / "dashboard-contributor-governance.png"), full_page=True)

    advance(platform, rules["voting_period_s"] + 1)
    printed = run_06(platform, user, tmp_path, 4, wrap="0")
    assert f"queued {description!r}: queued" in printed
    advance(platform, rules["timelock_delay_s"] + 1)
    printed = run_06(platform, user, tmp_path, 5, wrap="0")
    assert f"executed {description!r}: executed" in printed
    assert ol.governance.parameters()["training_price_per_token"] == str(2 * 10**13)
    with platform.as_token(token) as client:  # what a training run is charged follows the vote at once
        rows = [{"prompt": "What is gOPEN?", "response": "OPEN wrapped 1:1, with votes."}]
        quote = client.post("/services/platform/api/training/quote", json={"rows": rows, "config": {}})
    assert quote.status_code == 200, quote.text
    assert quote.json()["price_per_token_wei"] == str(2 * 10**13)

    # Back to the genesis price for the rest of the suite on this shared hub.
    restore = ol.governance.propose(f"restore the training price ({user})", training_price="0.00001")
    advance(platform, rules["voting_delay_s"] + 1)
    ol.governance.vote(restore, "for")
    advance(platform, rules["voting_period_s"] + 1)
    ol.governance.queue(restore)
    advance(platform, rules["timelock_delay_s"] + 1)
    ol.governance.execute(restore)
    assert ol.governance.parameters()["training_price_per_token"] == price_before


def test_a_class_vote_by_the_cli_then_by_the_admin_notebook(hub_env: RunningHub, tmp_path: Path) -> None:
    hub, klass = hub_env, f"gv{uuid.uuid4().hex[:4]}"
    names = [f"{klass}-0{i}" for i in (1, 2, 3)]  # as `create --count` names them
    admin_args = ["--hub-url", hub.url, "--token", hub.secrets.admin_api_token]
    assert workshop([*admin_args, "create", klass, "--count", "3", "--prefix", f"{klass}-"]) == 0
    first = openledger_sdk.connect(hub.url, hub.ensure_user(names[0]))
    wait_for_ledger(hub, hub.ensure_user(names[0]))
    cap_before = first.governance.parameters()["contributor_cap_bps"]

    # The CLI: two vote for, one against; the change passes and is executed.
    vote = [
        *admin_args,
        "vote",
        klass,
        "Cap at 60%",
        "--set",
        "contributor_cap_percent=60",
        "--wrap",
        "50",
        "--against",
        names[2],
    ]
    assert workshop(vote) == 0
    assert first.governance.parameters()["contributor_cap_bps"] == 6000
    passed = next(p for p in first.governance.proposals() if p.description == "Cap at 60%")
    assert (passed.state, passed.votes_for, passed.votes_against) == ("executed", 100, 50)
    # A malformed --set is refused before anything happens.
    assert workshop([*admin_args, "vote", klass, "bad", "--set", "contributor_cap_percent"]) == 2

    # The admin notebook runs the class vote that puts the cap back, then cleans the class up.
    executed = run_admin_notebook(
        hub,
        tmp_path,
        workshop=klass,
        student_count=3,
        name_prefix=f"{klass}-",
        open_per_student="0",
        run_class_vote=True,
        vote_description="Cap back at 50%",
        vote_changes={"contributor_cap_percent": "50"},
        vote_wrap="1",
        cleanup=True,
    )
    shown = cell_outputs(cell_with(executed, "class_vote("))
    assert "executed" in shown and "refused" not in shown, shown
    assert str(cap_before) == "5000"
    with hub.as_token(hub.ensure_user(f"{klass}-observer")) as client:
        parameters = client.get("/services/platform/api/governance").json()["parameters"]
    assert parameters["contributor_cap_bps"] == 5000
