"""The steps of running a workshop, as plain functions.

The `openledger-workshop` CLI and the instructor notebook (`templates/instructor/workshop-admin.ipynb`) both
call these, so a class set up from either behaves the same. Nothing here prints or parses arguments.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from gpu_spawner.accounts import system_name
from hub.hub_config import INSTRUCTORS_GROUP, STUDENTS_GROUP
from hub.settings import REPO_ROOT, Settings
from hub.workshop.hub_api import HubAPI, HubAPIError
from hub.workshop.roster import (
    INVALID_NAME,
    USERNAME_PATTERN,
    Roster,
    RosterError,
    RosterProblem,
    generated_roster,
    roster_from_csv,
)

TEMPLATES_DIR = REPO_ROOT / "templates" / "notebooks"
_USERNAME = re.compile(USERNAME_PATTERN)


def workshop_group(name: str) -> str:
    return f"workshop-{name}"


def homes_dir(settings: Settings) -> Path:
    """Where the single-user developer mode's spawner (SharedUserGPUSpawner) keeps every user's home."""
    return settings.data_dir / "homes"


def home_of(settings: Settings, user: str) -> Path:
    """A hub user's home: their own OS account's on a multi-user hub, else under the data dir."""
    if settings.isolation == "system":
        return settings.spawner.home_root / system_name(settings.spawner.system_user_prefix, user)
    return homes_dir(settings) / user


# --- the roster -------------------------------------------------------------------------------------------------


def load_roster(
    csv_path: str | Path | None, count: int | None, prefix: str = "student", reserved: Iterable[str] = ()
) -> Roster:
    """Names from a CSV when `csv_path` is given, else `count` generated ones; RosterError names every bad entry."""
    if csv_path:
        return roster_from_csv(Path(csv_path), set(reserved))
    return generated_roster(prefix, count or 0, set(reserved))


def instructor_problems(instructors: Iterable[str]) -> list[RosterProblem]:
    return [
        RosterProblem(None, name, f"(instructor) {INVALID_NAME}")
        for name in instructors
        if not _USERNAME.match(name.strip().lower())
    ]


def taken_names(api: HubAPI, workshop: str, names: Iterable[str]) -> list[RosterProblem]:
    """Names that belong to hub users outside this workshop: creating the class must not adopt them."""
    members = set(api.group_members(workshop_group(workshop)))
    return [
        RosterProblem(None, name, f"already exists outside workshop {workshop!r}")
        for name in names
        if name not in members and api.user(name) is not None
    ]


@dataclass
class RosterCheck:
    """What `create` would do or refuse; `roster` is None when there is any problem."""

    roster: Roster | None
    problems: list[RosterProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_roster(
    api: HubAPI,
    workshop: str,
    csv_path: str | Path | None,
    count: int | None,
    prefix: str = "student",
    instructors: Iterable[str] = (),
    reserved: Iterable[str] = (),
) -> RosterCheck:
    """Every problem `create` would refuse for, found without creating anything (the hub is only read)."""
    instructors = list(instructors)
    problems = instructor_problems(instructors)
    try:
        roster: Roster | None = load_roster(csv_path, count, prefix, reserved)
    except RosterError as err:
        problems += err.entries
        roster = None
    if roster is not None:
        problems += taken_names(api, workshop, roster.names)
    return RosterCheck(roster if not problems else None, problems)


# --- the class on the hub ---------------------------------------------------------------------------------------


def create(api: HubAPI, name: str, roster: Roster, instructors: list[str]) -> list[str]:
    """Create the class; refuse (creating nothing) if a name belongs to someone outside this workshop."""
    taken = taken_names(api, name, roster.names)
    if taken:
        raise RosterError(list(taken))
    group = workshop_group(name)
    api.ensure_group(group)
    created = api.create_users(list(roster.names) + instructors)
    api.add_to_group(group, list(roster.names))
    api.add_to_group(STUDENTS_GROUP, list(roster.names))
    if instructors:
        api.add_to_group(INSTRUCTORS_GROUP, instructors)
    return created


def students(api: HubAPI, name: str) -> list[str]:
    return api.group_members(workshop_group(name))


def distribute(settings: Settings, templates_dir: Path, users: list[str]) -> dict[str, list[str]] | None:
    """Copy templates into each student's home; files they already have are never overwritten. None on a multi-user
    hub: each student's server copies them, as that student's account, when it first starts."""
    from gpu_spawner.home import seed_home

    if settings.isolation == "system":
        return None
    return {user: [str(path) for path in seed_home(templates_dir, home_of(settings, user))] for user in users}


def issue_passwords(api: HubAPI, users: list[str], settings: Settings) -> dict[str, str]:
    """A new password of their own for each user, from the hub (shown once: hand them out, they are not stored).
    Admins and demo users keep the admin / demo password."""
    shared = {*settings.hub.admin_users, *settings.hub.demo_users}
    return {user: api.issue_password(user) for user in users if user not in shared}


@dataclass(frozen=True)
class CleanupReport:
    users: list[str]  # the students removed
    archived_to: Path | None  # where their homes were moved (None: none of them had a home this process could move)


def cleanup(api: HubAPI, name: str, settings: Settings) -> CleanupReport:
    """Stop the students' servers, delete them and the workshop group, and archive their homes into
    `<data dir>/archived-homes/`; instructors and datanets stay."""
    group = workshop_group(name)
    users = api.group_members(group)
    for user in users:
        api.stop_server(user)
        api.delete_user(user)
    api.delete_group(group)
    return CleanupReport(users, archive_homes(settings, users, group))


def archive_homes(settings: Settings, users: list[str], label: str) -> Path | None:
    """Move these users' homes to `<data dir>/archived-homes/<label>-<UTC time>/<user>`.

    A later account with a removed student's name then starts with an empty home instead of inheriting that
    student's files, and nothing is lost: the instructor can still hand work back from the archive. Homes this
    process may not move (other OS accounts' homes, from an admin's own server) stay; the spawner archives such a
    home when a new user of the same name first starts.
    """
    present = [user for user in users if os.access(home_of(settings, user).parent, os.W_OK)]
    present = [user for user in present if home_of(settings, user).is_dir()]
    if not present:
        return None
    target = settings.data_dir / "archived-homes" / f"{label}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    target.mkdir(parents=True, exist_ok=True)
    for user in present:
        shutil.move(home_of(settings, user), target / user)
    return target


# --- rewards: OPEN to pay for inferences, and settling on demand -------------------------------------------------


# What a student's run of the fine-tuning notebook trains (templates/notebooks/03-finetune-lora's settings).
CLASS_TRAINING = {
    "lora": {"r": 8, "alpha": 16, "dropout": 0.05},
    "lr": 1e-3,
    "epochs": 1,
    "max_steps": 4,
    "batch_size": 4,
    "max_len": 96,
    "eval_split": 0.25,
}
CLASS_RUNS_FUNDED = 2  # a stopped or failed try, then a full run


def class_training_cost(api: HubAPI, workshop: str) -> Decimal:
    """OPEN one student needs to fine-tune the class datanet with the notebook's settings, twice (0 when the class
    datanet has no published version yet: nothing to train on)."""
    body = {"datanet": datanet_name(workshop), "version": "latest", "config": CLASS_TRAINING}
    try:
        quote = api.platform("POST", "api/training/quote", json=body)
    except HubAPIError as err:
        if "404" in str(err):
            return Decimal(0)
        raise
    return Decimal(quote["cost"]) * CLASS_RUNS_FUNDED


def fund(
    api: HubAPI, users: list[str], open_amount: str, eth: str = "1", workshop: str | None = None
) -> dict[str, str]:
    """Send every student `open_amount` OPEN (their questions to models are paid from it) and gas, from the
    platform's faucet; with `workshop`, also what training the class model costs (fine-tuning on the hub is paid).
    Returns user → "ok" or the reason it failed (the others are still funded)."""
    results: dict[str, str] = {}
    total = Decimal(str(open_amount)) + (class_training_cost(api, workshop) if workshop else Decimal(0))
    for user in users:
        try:
            api.platform("POST", "api/admin/faucet", json={"user": user, "open": format(total, "f"), "eth": str(eth)})
            results[user] = "ok"
        except HubAPIError as err:
            results[user] = str(err)
    return results


def settle_now(api: HubAPI, wait_s: float = 60) -> dict[str, Any]:
    """Close the current rewards epoch and settle it now (charges, on-chain roots, claimable rewards), so students
    can verify and claim during the class instead of at the end of the epoch."""
    return api.platform("POST", "api/admin/settle", json={"wait_s": wait_s})


# --- the class datanet ------------------------------------------------------------------------------------------

SEED_SCHEMA = {"prompt": "str", "response": "str"}

# Written for this platform; distinct enough that near-duplicate detection keeps every row.
STARTER_ROWS: tuple[tuple[str, str], ...] = (
    ("What does LoRA train?", "Two small low-rank matrices per chosen layer; the base model's weights stay frozen."),
    ("Why is LoRA cheap to serve?", "One base model in memory serves many adapters, each only a few megabytes."),
    ("What is a datanet version?", "A frozen snapshot of approved rows whose Merkle root is recorded on-chain."),
    ("Who approves rows in a datanet?", "The owner and the validators the owner names review each submission."),
    ("How are contributors paid?", "Inference fees are split by attribution: rows that shaped an answer earn OPEN."),
    ("What does the rank of an adapter set?", "Its capacity: a higher rank learns more, at more memory and time."),
    ("Why hold out an evaluation split?", "Loss on unseen rows shows whether the adapter generalizes or memorizes."),
    ("What is a prompt template for?", "It lays out instruction and answer the way the model saw them in training."),
)


def starter_rows() -> list[dict[str, str]]:
    return [{"prompt": prompt, "response": response} for prompt, response in STARTER_ROWS]


def _slug(workshop: str) -> str:
    """The workshop name as lower-case letters, digits and single hyphens, starting with a letter."""
    slug = re.sub(r"[^a-z0-9]+", "-", workshop.lower()).strip("-") or "class"
    return slug if slug[0].isalpha() else f"w-{slug}"


def datanet_name(workshop: str) -> str:
    """The class datanet's name (datanet names allow what `_slug` keeps, 3-64 characters)."""
    return f"{_slug(workshop)[:59].rstrip('-')}-data"


def seed_datanet(
    api: HubAPI, workshop: str, owner: str, rows: list[dict[str, Any]] | str | Path | None = None
) -> dict[str, Any]:
    """Create, fill, approve and publish the class datanet as `owner`, once (an existing one is left as it is).

    `rows`: prompt/response dicts, or a .jsonl/.csv/.parquet file of them; None: the starter rows.
    """
    import openledger_sdk
    from openledger_sdk.errors import OpenLedgerError

    token = api.new_token(owner, note=f"workshop {workshop}: class datanet", expires_in=900)
    ol = openledger_sdk.connect(api.hub_url, token)
    name = datanet_name(workshop)
    try:
        existing = ol.datanets.get(name)
    except OpenLedgerError as err:
        if err.status != 404:
            raise
    else:
        return {"status": "exists", "name": name, "owner": existing.owner, "version": existing.latest_version}
    datanet = ol.datanets.create(
        name,
        summary=f"Class datanet of workshop {workshop}: prompt/response pairs to fine-tune on.",
        tags=["workshop", _slug(workshop)[:32]],
        schema=SEED_SCHEMA,
    )
    source = starter_rows() if rows is None else (str(rows) if isinstance(rows, Path) else rows)
    datanet.approve(datanet.contribute(source, progress=False), reason=f"seed rows of workshop {workshop}")
    version = datanet.publish()
    return {
        "status": "created",
        "name": name,
        "owner": owner,
        "version": version["version"],
        "rows": version["row_count"],
    }
