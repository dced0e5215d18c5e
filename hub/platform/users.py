"""Who is calling: `/api/me`, and user profiles readable by that user or an admin."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, Request

from hub.auth import HubUser, current_user, hub_user, token_from_request
from hub.platform.runtime import Feature, PlatformRuntime, get_runtime
from hub.platform.welcome_grant import grant_welcome_open

router = APIRouter()


def user_profile(user: HubUser) -> dict:
    return {"name": user.name, "kind": user.kind, "admin": user.admin, "groups": list(user.groups)}


@router.get("/api/me")
async def me(user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)) -> dict:
    """The hub user behind the request's token. A user's first call also brings their welcome grant of OPEN (dev
    chains only; see hub.platform.welcome_grant), so notebook 00's `ol.whoami()` is all a newcomer needs."""
    if user.kind == "user":
        await asyncio.to_thread(grant_welcome_open, runtime, user.name)
    return user_profile(user)


@router.get("/api/users/{name}")
async def user_by_name(name: str, request: Request, user: HubUser = Depends(current_user)) -> dict:
    """A user's profile: only that user or an admin may read it."""
    if not user.can_act_for(name):
        raise HTTPException(403, f"user {user.name!r} may not read user {name!r}")
    if name == user.name:
        return user_profile(user)
    # Ask the hub with the caller's own token, so the hub's permission check applies too.
    answer = await hub_user(name, token_from_request(request))
    if answer.status_code != 200:
        raise HTTPException(answer.status_code, f"hub says: {answer.text[:200]}")
    model = answer.json()
    return {
        "name": model["name"],
        "kind": "user",
        "admin": model.get("admin", False),
        "groups": model.get("groups", []),
    }


feature = Feature(name="users", router=router)
