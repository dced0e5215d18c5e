"""What the instructor notebook adds to the workshop steps: connection defaults from a hub server's env, and
results as pandas tables (which render as HTML in Jupyter and stay readable in papermill's output)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from hub.workshop.hub_api import HubAPI
from hub.workshop.roster import RosterProblem

if TYPE_CHECKING:
    import pandas


class NotConfiguredError(Exception):
    """No hub URL or token: the message says which parameter to set."""


def default_hub_url() -> str:
    """The hub's public URL in a hub server (the spawner sets OPENLEDGER_HUB_URL), else from JUPYTERHUB_API_URL."""
    if url := os.environ.get("OPENLEDGER_HUB_URL"):
        return url
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    return api_url.removesuffix("/").removesuffix("/hub/api")


def default_token() -> str:
    """An explicit admin token wins; else this server's own token (admins' servers get the workshop scopes)."""
    return os.environ.get("OPENLEDGER_ADMIN_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN", "")


def connect(hub_url: str = "", token: str = "") -> HubAPI:
    hub_url, token = hub_url or default_hub_url(), token or default_token()
    if not hub_url:
        raise NotConfiguredError("no hub URL: set the `hub_url` parameter (e.g. http://127.0.0.1:8000)")
    if not token:
        raise NotConfiguredError("no token: set `api_token` to an admin token from the hub's Token page")
    return HubAPI(hub_url, token)


def resolve_notebook(notebook: str | Path, templates_dir: Path) -> Path:
    """A path as given when it exists, else the template of that name."""
    path = Path(notebook).expanduser()
    return path if path.exists() else templates_dir / path


def problems_frame(problems: list[RosterProblem]) -> pandas.DataFrame:
    import pandas

    rows = [{"line": p.line if p.line is not None else "", "name": p.name, "problem": p.reason} for p in problems]
    return pandas.DataFrame(rows, columns=["line", "name", "problem"])


def results_frame(results: dict[str, str | None]) -> pandas.DataFrame:
    """Dry-run results: one row per student, the error's last line when the run failed."""
    import pandas

    rows = [{"user": user, "passed": error is None, "error": error or ""} for user, error in results.items()]
    return pandas.DataFrame(rows, columns=["user", "passed", "error"])


def progress_frame(rows: list[dict]) -> pandas.DataFrame:
    """The class progress table, with yes/no columns for the two things instructors look for."""
    import pandas

    frame = pandas.DataFrame(rows)
    if frame.empty:
        return pandas.DataFrame(columns=["user", "server", "last_activity", "has_model", "ran_inferences"])
    # Counters come from platform features; a feature that is off leaves its column out.
    for counter, flag in (("models", "has_model"), ("inferences", "ran_inferences")):
        frame[flag] = frame[counter].fillna(0).astype(int) > 0 if counter in frame else False
    return frame


def login_sheet(hub_url: str, passwords: dict[str, str]) -> pandas.DataFrame:
    """What to hand each student: where to log in, as whom, with which password (their own)."""
    import pandas

    login = f"{hub_url.rstrip('/')}/hub/login"
    return pandas.DataFrame([{"user": user, "login_url": login, "password": pw} for user, pw in passwords.items()])
