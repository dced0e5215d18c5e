"""The instructor's workshop notebook: run by papermill against the real hub, and delivered to admins' homes."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import papermill
import pytest
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.user import User
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from gpu_spawner.spawner import SharedUserGPUSpawner
from hub.hub_config import SERVER_SCOPES, server_token_scopes
from hub.settings import REPO_ROOT
from hub.workshop.hub_api import WORKSHOP_SCOPES
from hub.workshop.notebook import progress_frame
from tests.hub_harness import RunningHub, run_in_kernel

NOTEBOOK = REPO_ROOT / "templates" / "instructor" / "workshop-admin.ipynb"
KERNEL = "openledger-python"


def cell_outputs(cell: nbformat.NotebookNode) -> str:
    """What a code cell showed: printed text, displayed tables (plain and HTML) and the error, if any."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/html", "")]
        parts.append(output.get("evalue", ""))
    return "\n".join(parts)


def cell_with(notebook: nbformat.NotebookNode, snippet: str) -> nbformat.NotebookNode:
    return next(cell for cell in notebook.cells if cell.cell_type == "code" and snippet in cell.source)


def run_admin_notebook(hub: RunningHub, out: Path, **parameters: object) -> nbformat.NotebookNode:
    """Execute the notebook as an instructor would, with the admin service's token; return the executed copy.

    papermill writes the executed copy (to `out`) also when a cell fails, before it raises."""
    target = out / "workshop-admin.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(target),
        parameters={"hub_url": hub.url, "api_token": hub.secrets.admin_api_token, **parameters},
        kernel_name=KERNEL,
        progress_bar=False,
        execution_timeout=300,
        cwd=str(out),
    )
    return nbformat.read(target, as_version=4)


def tiny_template(directory: Path) -> Path:
    """A one-cell dry-run notebook: a kernel start and one platform call as the student (00-welcome does more)."""
    notebook = new_notebook(
        cells=[
            new_code_cell('expected_user = ""', metadata={"tags": ["parameters"]}),
            new_code_cell(
                "import openledger_sdk\n"
                'name = openledger_sdk.connect().whoami()["name"]\n'
                "assert name == expected_user\n"
                'print("Signed in as", name)'
            ),
        ]
    )
    notebook.metadata["kernelspec"] = {"name": KERNEL, "display_name": "OpenLedger", "language": "python"}
    path = directory / "tiny.ipynb"
    nbformat.write(notebook, path)
    return path


# --- no hub needed ----------------------------------------------------------------------------------------------


def test_the_notebook_declares_its_parameters_and_is_safe_by_default() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert notebook.metadata.kernelspec.name == KERNEL
    declared = papermill.inspect_notebook(str(NOTEBOOK))
    assert {"hub_url", "api_token", "roster_csv", "student_count", "cleanup"} <= set(declared)
    assert declared["cleanup"]["default"] == "False" and declared["run_dry_run"]["default"] == "False"
    assert declared["settle_rewards"]["default"] == "False"


def test_progress_frame_flags_models_and_inferences() -> None:
    rows = [
        {"user": "a", "server": "ready", "last_activity": "-", "models": 1, "inferences": 0},
        {"user": "b", "server": "none", "last_activity": "-", "models": 0, "inferences": 3},
    ]
    frame = progress_frame(rows)
    assert frame["has_model"].tolist() == [True, False]
    assert frame["ran_inferences"].tolist() == [False, True]
    # A platform without the models feature leaves its column out: nobody has a model then.
    assert progress_frame([{"user": "c", "server": "none", "last_activity": "-"}])["has_model"].tolist() == [False]
    assert list(progress_frame([]).columns)[:2] == ["user", "server"]


def test_only_admins_default_servers_ask_for_the_workshop_scopes() -> None:
    def spawner(admin: bool, name: str = "") -> SimpleNamespace:
        return SimpleNamespace(user=SimpleNamespace(admin=admin), name=name)

    assert server_token_scopes(spawner(admin=True)) == SERVER_SCOPES + list(WORKSHOP_SCOPES)
    assert server_token_scopes(spawner(admin=False)) == SERVER_SCOPES
    assert server_token_scopes(spawner(admin=True, name="dashboards")) == SERVER_SCOPES


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spawner's own start runs (slots, homes); the single-user process is faked."""

    async def fake_start(self: LocalProcessSpawner) -> tuple[str, int]:
        return ("127.0.0.1", 40000)

    monkeypatch.setattr(LocalProcessSpawner, "start", fake_start)


@pytest.mark.asyncio
async def test_admins_homes_get_the_notebook_and_students_do_not(tmp_path: Path, no_processes: None) -> None:
    config = Config()
    config.GPUSlotMixin.gpus = "none"
    config.GPUSlotMixin.state_file = str(tmp_path / "slots.json")
    config.GPUSlotMixin.templates_dir = str(REPO_ROOT / "templates" / "notebooks")
    config.GPUSlotMixin.admin_templates_dir = str(NOTEBOOK.parent)
    config.SharedUserGPUSpawner.home_dir_template = str(tmp_path / "homes" / "{username}")
    db = orm.new_session_factory("sqlite:///:memory:")()
    for name, admin in (("teacher", True), ("pupil", False)):
        orm_user = orm.User(name=name, admin=admin)
        db.add_all([orm_user, orm.Spawner(name="", user=orm_user)])
        db.commit()
        user = User(orm_user, {"spawner_class": SharedUserGPUSpawner, "config": config, "hub": Hub()})
        spawner = user.spawners[""]
        spawner.clear_state()
        await spawner.start()
    homes = tmp_path / "homes"
    assert (homes / "teacher" / NOTEBOOK.name).exists() and (homes / "teacher" / "00-welcome.ipynb").exists()
    assert not (homes / "pupil" / NOTEBOOK.name).exists() and (homes / "pupil" / "00-welcome.ipynb").exists()


# --- on the real hub --------------------------------------------------------------------------------------------


@pytest.fixture
def hub_env(platform: RunningHub, monkeypatch: pytest.MonkeyPatch) -> RunningHub:
    # The notebook's kernel inherits this, as a hub server gets it from the spawner.
    monkeypatch.setenv("OPENLEDGER_CONFIG", str(platform.settings.settings_file))
    return platform


@pytest.mark.e2e
def test_a_class_of_three_from_roster_to_cleanup(hub_env: RunningHub, tmp_path: Path) -> None:
    names = ["nbclass-01", "nbclass-02", "nbclass-03"]
    executed = run_admin_notebook(
        hub_env,
        tmp_path,
        workshop="nbclass",
        student_count=3,
        name_prefix="nbclass-",
        instructor="nbprof",
        run_dry_run=True,
        dry_run_notebook=str(tiny_template(tmp_path)),
        open_per_student="3",
        settle_rewards=True,
        cleanup=True,
    )
    assert "roster OK: 3 students" in cell_outputs(cell_with(executed, "check_roster"))
    created = cell_outputs(cell_with(executed, "steps.create"))
    assert "3 students (4 new accounts)" in created and "4 login passwords issued" in created
    # The login sheet: a password of their own per account, each different.
    sheet_passwords = re.findall(r"<td>(\S{12})</td>\s*</tr>", created)
    assert len(sheet_passwords) == 4 and len(set(sheet_passwords)) == 4
    assert "nbclass-data (created), owner nbprof, version 1" in cell_outputs(cell_with(executed, "seed_datanet"))
    assert "sent 3 OPEN to 3 of 3 students" in cell_outputs(cell_with(executed, "steps.fund"))
    assert "dry run of tiny.ipynb: 3 of 3 passed" in cell_outputs(cell_with(executed, "dry_run("))
    settled = cell_outputs(cell_with(executed, "steps.settle_now"))
    assert any(f": {status}" in settled for status in ("settled", "empty", "nothing to settle")), settled
    progress = cell_outputs(cell_with(executed, "progress_frame"))
    assert all(progress.count(f"<td>{name}</td>") == 1 for name in names)
    assert progress.count("<td>nbclass-") == 3
    cleaned = cell_outputs(cell_with(executed, "steps.cleanup"))
    assert "removed 3 students" in cleaned

    # What the notebook left: each student's dry run ran as that student, homes got the course notebooks ...
    dry_copy = nbformat.read(tmp_path / "workshop-dry-run" / names[1] / "tiny.ipynb", as_version=4)
    printed = cell_outputs(cell_with(dry_copy, "Signed in as"))
    assert f"Signed in as {names[1]}" in printed
    # ... (on a multi-user hub the course notebooks reach each home at the student's first start) ...
    assert not any(hub_env.home(name).exists() for name in names)
    with hub_env.admin() as admin:
        # ... the instructor and the class datanet stay, the students and their group are gone.
        assert "instructors" in admin.get("/hub/api/users/nbprof").json()["groups"]
        datanet = admin.get("/services/platform/api/datanets/nbclass-data").json()
        assert datanet["owner"] == "nbprof" and datanet["latest_version"] == 1
        assert all(admin.get(f"/hub/api/users/{name}").status_code == 404 for name in names)
        assert admin.get("/hub/api/groups/workshop-nbclass").status_code == 404


@pytest.mark.e2e
def test_a_roster_with_a_repeated_name_is_reported_and_nothing_is_created(hub_env: RunningHub, tmp_path: Path) -> None:
    roster = tmp_path / "class.csv"
    roster.write_text("username\nnbbad-1\nnbbad-2\nNBBAD-1\n")
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        run_admin_notebook(hub_env, tmp_path, workshop="nbbad", roster_csv=str(roster), instructor="nbbadprof")
    assert caught.value.ename == "RosterError"
    executed = nbformat.read(tmp_path / "workshop-admin.ipynb", as_version=4)
    report = cell_outputs(cell_with(executed, "check_roster"))
    assert "<td>nbbad-1</td>" in report and "repeats line 2" in report
    assert cell_with(executed, "steps.create").get("outputs") == []  # the notebook stopped before creating
    with hub_env.admin() as admin:
        for name in ("nbbad-1", "nbbad-2", "nbbadprof"):
            assert admin.get(f"/hub/api/users/{name}").status_code == 404
        assert admin.get("/hub/api/groups/workshop-nbbad").status_code == 404
        assert admin.get("/services/platform/api/datanets/nbbad-data").status_code == 404


@pytest.mark.e2e
def test_an_admins_server_has_the_notebook_and_a_token_that_can_run_it(hub_env: RunningHub) -> None:
    name = "nbadmin"
    with hub_env.admin() as admin:
        admin.post("/hub/api/users", json={"usernames": [name], "admin": True}).raise_for_status()
    token = hub_env.ensure_user(name)
    hub_env.spawn(name)
    try:
        assert (hub_env.home(name) / NOTEBOOK.name).exists()
        # The notebook's defaults: this server's hub URL, token and settings file.
        code = (
            "from hub.settings import load_settings\n"
            "from hub.workshop import notebook as nb\n"
            "api = nb.connect()\n"
            "print(api.whoami()['name'], api.missing_scopes(), load_settings().settings_file)"
        )
        printed = run_in_kernel(hub_env, name, token, code)
        assert printed.split() == [name, "[]", str(hub_env.settings.settings_file)]
    finally:
        hub_env.stop_server(name)
        with hub_env.admin() as admin:
            admin.delete(f"/hub/api/users/{name}")
