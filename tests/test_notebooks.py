"""The template notebooks run top to bottom with papermill, in the OpenLedger kernel, against the real hub."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import nbformat
import papermill
import pytest

import openledger_sdk
from hub.settings import REPO_ROOT
from hub.workshop.runner import acting_as
from tests.hub_harness import RunningHub
from tests.tiny_model import train_tiny_adapter

pytestmark = pytest.mark.e2e
TEMPLATES = REPO_ROOT / "templates" / "notebooks"


def run_notebook(platform: RunningHub, user: str, name: str, out_dir: Path, **parameters: object) -> str:
    """Execute a template as `user`; return everything its cells printed."""
    token = platform.ensure_user(user)
    target = out_dir / name
    with acting_as(platform.url, token):
        papermill.execute_notebook(
            str(TEMPLATES / name),
            str(target),
            parameters=parameters,
            kernel_name="openledger-python",
            progress_bar=False,
            execution_timeout=300,
            cwd=str(out_dir),  # files a notebook writes land beside it, as in a user's home, not in the repo
        )
    executed = nbformat.read(target, as_version=4)
    return "".join(
        output.get("text", "") for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs
    )


def test_every_template_declares_papermill_parameters() -> None:
    for path in sorted(TEMPLATES.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
        assert notebook.metadata.kernelspec.name == "openledger-python", path.name


def test_01_explore_datanets(platform: RunningHub, tmp_path: Path) -> None:
    printed = run_notebook(platform, "nb-explorer", "01-explore-datanets.ipynb", tmp_path)
    assert "datanets tagged 'demo': ['openledger-handbook']" in printed
    assert "verifies against root" in printed and "an edited copy does not" in printed


def test_02_contribute_data(platform: RunningHub, tmp_path: Path) -> None:
    printed = run_notebook(platform, "nb-contributor", "02-contribute-data.ipynb", tmp_path)
    assert "version 1: 8 rows" in printed
    # The bad upload (a repeated row and a row missing a field) was refused whole, both rows named.
    assert "rejected: 2 problems, nothing stored" in printed


def test_04_serve_with_openlora(platform: RunningHub, tmp_path: Path) -> None:
    printed = run_notebook(platform, "nb-server", "04-serve-with-openlora.ipynb", tmp_path, max_tokens=6)
    assert "chatting with tiny-base" in printed
    assert "price: 0 OPEN" in printed  # the base model is free
    assert "pieces)" in printed and "compared" in printed


def test_05_attribution_and_rewards(platform: RunningHub, tmp_path: Path) -> None:
    # The student's own model on their own rows (what notebooks 02 and 03 leave behind), and OPEN to pay with.
    user = "nb-rewards"
    me = openledger_sdk.connect(platform.url, platform.ensure_user(user))
    dn = me.datanets.create("nb-rewards-facts", schema={"prompt": str, "response": str}, approval="auto")
    dn.contribute(
        [{"prompt": f"Where is beacon {n}?", "response": f"Beacon {n} stands on the {place} pier."} for n, place in
         (("Astra", "eastern"), ("Borea", "salt"), ("Corvo", "granite"))],
        progress=False,
    )  # fmt: skip
    version = dn.publish()
    base = platform.settings.data_dir / "models" / "tiny-base"
    with platform.admin() as admin:  # OPEN for training (paid on the hub) and for the questions
        funded = admin.post("/services/platform/api/admin/faucet", json={"user": user, "open": "5", "eth": "1"})
        assert funded.status_code == 200, funded.text
    trained = train_tiny_adapter(base, version, me, tmp_path / "model", recite=True)
    me.models.publish(trained, "nb-rewards-bot", "2")

    printed = run_notebook(
        platform,
        user,
        "05-attribution-and-rewards.ipynb",
        tmp_path,
        admin_token=platform.secrets.admin_api_token,
        settle_timeout_s=180,
    )
    assert "model nb-rewards-bot: trained on datanet nb-rewards-facts version 1" in printed
    assert "A: Beacon Astra stands on the eastern pier." in printed  # the adapter recites its row
    assert "attributed: True" in printed and "1 contributor(s) credited" in printed
    assert "record settled in epoch" in printed
    assert "this record verifies: True" in printed
    assert "a record with one more wei verifies: False" in printed
    claimed = Decimal(printed.split("claimed: ")[1].split(" OPEN")[0])
    assert claimed > 0  # owner share + contributor share of the fee
    assert "second claim: 0 OPEN" in printed
