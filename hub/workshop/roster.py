"""Who is in a class: names from a CSV or generated, all checked before anything is created."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

# Safe in URLs, file paths (homes) and Kubernetes pod names; the hub enforces the same pattern.
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_USERNAME = re.compile(USERNAME_PATTERN)
NAME_COLUMNS = ("username", "user", "name", "login")
INVALID_NAME = "is not a valid user name (1-32 of a-z, 0-9, '-', '_', starting with a letter or digit)"


@dataclass(frozen=True)
class RosterProblem:
    """One bad roster entry: its line (None when it has none), the name as written, and what is wrong."""

    line: int | None
    name: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.name!r} {self.reason}" if self.name else f"{where}{self.reason}"


class RosterError(Exception):
    """Every problem found in a roster, one per line; nothing was created."""

    def __init__(self, problems: list[RosterProblem | str]) -> None:
        # Plain strings stay accepted; `entries` keeps the structure for tables (the instructor notebook).
        self.entries = [p if isinstance(p, RosterProblem) else RosterProblem(None, "", p) for p in problems]
        self.problems = [str(entry) for entry in self.entries]
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Roster:
    names: tuple[str, ...]


def check_names(entries: list[tuple[int, str]], reserved: set[str] = frozenset()) -> Roster:
    """(line number, name) pairs → a Roster, or RosterError naming every bad or repeated line."""
    problems: list[RosterProblem] = []
    first_seen: dict[str, int] = {}
    for line, raw in entries:
        name = raw.strip().lower()
        if not _USERNAME.match(name):
            problems.append(RosterProblem(line, raw, INVALID_NAME))
        elif name in reserved:
            problems.append(RosterProblem(line, name, "is reserved (an admin or instructor)"))
        elif name in first_seen:
            problems.append(RosterProblem(line, name, f"repeats line {first_seen[name]}"))
        else:
            first_seen[name] = line
    if not entries:
        problems.append(RosterProblem(None, "", "the roster is empty"))
    if problems:
        raise RosterError(problems)
    return Roster(tuple(first_seen))


def roster_from_csv(path: Path, reserved: set[str] = frozenset()) -> Roster:
    """A CSV with a header naming the user column (username/user/name/login), or one name per line."""
    text = path.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    column = next((header.index(name) for name in NAME_COLUMNS if name in header), None)
    start = 1 if column is not None else 0
    column = column or 0
    entries = [
        (number, row[column] if len(row) > column else "")
        for number, row in enumerate(rows[start:], start=start + 1)
        if any(cell.strip() for cell in row)
    ]
    return check_names(entries, reserved)


def generated_roster(prefix: str, count: int, reserved: set[str] = frozenset()) -> Roster:
    if count < 1:
        raise RosterError([RosterProblem(None, "", f"count must be at least 1, not {count}")])
    width = max(2, len(str(count)))
    return check_names([(i, f"{prefix}{i:0{width}d}") for i in range(1, count + 1)], reserved)
