"""Workshop tooling: rosters are checked whole before anything is created; a 10-student class on the real hub."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from hub.settings import REPO_ROOT
from hub.workshop.cli import main as workshop
from hub.workshop.hub_api import HubAPI
from hub.workshop.roster import RosterError, generated_roster, roster_from_csv
from tests.hub_harness import RunningHub


def write_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "class.csv"
    path.write_text(text)
    return path


def test_csv_with_header_and_extra_columns(tmp_path: Path) -> None:
    roster = roster_from_csv(write_csv(tmp_path, "email,username\na@x.org,Ada\ng@x.org,grace\n"))
    assert roster.names == ("ada", "grace")


def test_csv_without_header_one_name_per_line(tmp_path: Path) -> None:
    assert roster_from_csv(write_csv(tmp_path, "ada\n\ngrace\n")).names == ("ada", "grace")


def test_every_bad_line_is_reported(tmp_path: Path) -> None:
    csv = "username\nada\nbad name\nADA\nadmin\n../etc\n" + "x" * 40 + "\n"
    with pytest.raises(RosterError) as caught:
        roster_from_csv(write_csv(tmp_path, csv), reserved={"admin"})
    problems = caught.value.problems
    assert len(problems) == 5
    assert "line 3: 'bad name' is not a valid user name" in problems[0]
    assert "line 4: 'ada' repeats line 2" in problems[1]
    assert "line 5: 'admin' is reserved" in problems[2]
    assert "line 6" in problems[3] and "line 7" in problems[4]


def test_empty_roster_and_bad_count(tmp_path: Path) -> None:
    with pytest.raises(RosterError, match="empty"):
        roster_from_csv(write_csv(tmp_path, "username\n"))
    with pytest.raises(RosterError, match="at least 1"):
        generated_roster("s", 0)
    assert generated_roster("ml-", 3).names == ("ml-01", "ml-02", "ml-03")


@pytest.fixture
def hub_env(platform: RunningHub, monkeypatch: pytest.MonkeyPatch) -> RunningHub:
    monkeypatch.setenv("OPENLEDGER_CONFIG", str(platform.settings.settings_file))
    return platform


@pytest.mark.e2e
def test_bad_csv_creates_nothing(hub_env: RunningHub, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    csv = write_csv(tmp_path, "username\nokname1\nokname2\nokname1\nnot valid\n")
    assert workshop(["create", "badclass", "--csv", str(csv)]) == 2
    err = capsys.readouterr().err
    assert "nothing was created" in err and "line 4" in err and "line 5" in err
    with hub_env.admin() as admin:
        assert admin.get("/hub/api/users/okname1").status_code == 404
        assert admin.get("/hub/api/groups/workshop-badclass").status_code == 404


@pytest.mark.e2e
def test_names_taken_outside_the_workshop_are_refused(hub_env: RunningHub, tmp_path: Path) -> None:
    hub_env.ensure_user("outsider")
    csv = write_csv(tmp_path, "username\nfresh1\noutsider\n")
    assert workshop(["create", "takenclass", "--csv", str(csv)]) == 2
    with hub_env.admin() as admin:
        assert admin.get("/hub/api/users/fresh1").status_code == 404


@pytest.mark.e2e
def test_ten_student_class_end_to_end(hub_env: RunningHub, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    names = [f"ml101-{i:02d}" for i in range(1, 11)]
    csv = write_csv(tmp_path, "username\n" + "\n".join(names) + "\n")
    assert workshop(["create", "ml101", "--csv", str(csv), "--instructor", "prof"]) == 0
    created = capsys.readouterr().out
    assert "10 students (11 new accounts)" in created
    passwords = dict(line.split("\t") for line in created.splitlines() if "\t" in line)
    assert set(passwords) == {*names, "prof"} and len(set(passwords.values())) == 11
    settings = hub_env.settings
    with HubAPI(hub_env.url, hub_env.secrets.admin_api_token) as api:
        assert sorted(api.group_members("workshop-ml101")) == names
        assert set(names) <= set(api.group_members("students"))
        assert "prof" in api.group_members("instructors")
        prof_token = api.new_token("prof", "test")
        student_token = api.new_token(names[0], "test")

        # Each password opens its own account only; the demo password opens none of them.
        assert api.can_log_in(names[0], passwords[names[0]])
        assert not api.can_log_in(names[1], passwords[names[0]])
        assert not api.can_log_in(names[0], hub_env.secrets.user_password)

    assert workshop(["distribute", "ml101"]) == 0
    assert "when it first starts" in capsys.readouterr().out  # each student's own account copies them
    hub_env.spawn(names[0])
    assert (hub_env.home(names[0]) / "00-welcome.ipynb").exists()

    out = tmp_path / "dry"
    notebook = REPO_ROOT / "templates" / "notebooks" / "00-welcome.ipynb"
    assert workshop(["dry-run", "ml101", str(notebook), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert report.count("\tok") == 10
    executed = json.loads((out / names[3] / "00-welcome.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for cell in executed["cells"] for o in cell.get("outputs", []))
    assert f"Signed in as {names[3]}" in printed

    assert workshop(["progress", "ml101", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["user"] for row in rows] == names
    assert [row["server"] != "none" for row in rows] == [True] + [False] * 9  # only the first student started one

    # The progress counters are for admins and instructors, not students.
    params = {"users": ",".join(names)}
    url = f"{hub_env.url}/services/platform/api/admin/progress"
    assert httpx.get(url, params=params, headers={"Authorization": f"token {prof_token}"}).status_code == 200
    assert httpx.get(url, params=params, headers={"Authorization": f"token {student_token}"}).status_code == 403

    # OPEN for every student's questions, and settling on demand when the class reaches notebook 05.
    assert workshop(["fund", "ml101", "--open", "2"]) == 0
    assert capsys.readouterr().out.count("\tok") == 10
    with hub_env.as_token(student_token) as student:
        assert Decimal(student.get("/services/platform/api/wallet").json()["balances"]["OPEN"]) >= 2 * 10**18
    assert workshop(["settle"]) == 0
    assert re.search(r"epoch \S+: (settled|empty|nothing to settle)", capsys.readouterr().out)

    (hub_env.home(names[0]) / "my-work.txt").write_text("a student's own file")
    assert workshop(["cleanup", "ml101"]) == 0
    with hub_env.admin() as admin:
        assert all(admin.get(f"/hub/api/users/{name}").status_code == 404 for name in names)
    # Their homes are archived, not deleted, and not left where a new account with the same name would find them.
    printed = capsys.readouterr().out
    archive = Path(re.search(r"their homes were moved to (\S+)", printed).group(1))
    assert archive.parent == settings.data_dir / "archived-homes" and archive.name.startswith("workshop-ml101-")
    assert not any(hub_env.home(name).exists() for name in names)
    assert (archive / names[0] / "my-work.txt").read_text() == "a student's own file"
    assert (archive / names[0] / "00-welcome.ipynb").exists()
