"""Per-user counters for the workshop progress table; each feature registers what it can count."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlmodel import Session

from hub.auth import HubUser, current_user
from hub.platform.runtime import Feature, get_session

# A provider maps (session, usernames) → {username: {column: value}}.
ProgressProvider = Callable[[Session, list[str]], dict[str, dict[str, int]]]
PROGRESS_PROVIDERS: list[ProgressProvider] = []

router = APIRouter()


@router.get("/api/admin/progress")
def progress(
    users: str = Query(..., description="comma-separated user names"),
    user: HubUser = Depends(current_user),
    session: Session = Depends(get_session),
) -> dict[str, dict[str, int]]:
    """Admins and instructors only: how far each listed user got."""
    if not (user.admin or "instructors" in user.groups):
        raise HTTPException(403, "only admins and instructors may read class progress")
    names = [name for name in users.split(",") if name]
    table: dict[str, dict[str, int]] = {name: {} for name in names}
    for provider in PROGRESS_PROVIDERS:
        for name, counters in provider(session, names).items():
            table.setdefault(name, {}).update(counters)
    return table


feature = Feature(name="progress", router=router)
