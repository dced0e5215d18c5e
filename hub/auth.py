"""Hub-token authentication for the FastAPI services, using JupyterHub's own token check (HubAuth).

A request carries `Authorization: token <hub token>` (or `Bearer`). The hub says whose token it is and
which scopes it has; the service admits it only with `access:services` (or access to this service).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated
from urllib.parse import quote

import httpx
from fastapi import Depends, HTTPException, Request
from jupyterhub.services.auth import HubAuth


@dataclass(frozen=True)
class HubUser:
    """The hub identity behind a request's token."""

    name: str
    admin: bool
    groups: tuple[str, ...]
    scopes: frozenset[str]
    kind: str  # "user" or "service"

    def can_act_for(self, username: str) -> bool:
        """True for the user themselves and for admins."""
        return self.admin or (self.kind == "user" and self.name == username)


@lru_cache(maxsize=1)
def hub_auth() -> HubAuth:
    """One HubAuth per service process; its settings come from the env the hub gives managed services."""
    return HubAuth(cache_max_age=60)


def token_from_request(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return None


def _service_access_scopes() -> set[str]:
    name = os.environ.get("JUPYTERHUB_SERVICE_NAME", "")
    return {"access:services", f"access:services!service={name}"} if name else {"access:services"}


async def current_user(request: Request) -> HubUser:
    """FastAPI dependency: 401 without a valid hub token, 403 without access to this service."""
    token = token_from_request(request)
    if token is None:
        raise HTTPException(401, "missing token: send `Authorization: token <your JupyterHub API token>`")
    model = await hub_auth().user_for_token(token, sync=False)
    if not model:
        raise HTTPException(401, "invalid or expired JupyterHub token")
    scopes = frozenset(model.get("scopes", []))
    if not scopes & _service_access_scopes():
        raise HTTPException(403, "this token has no access to this service (needs the access:services scope)")
    return HubUser(
        name=model["name"],
        admin=bool(model.get("admin")) or "admin:users" in scopes,
        groups=tuple(model.get("groups", [])),
        scopes=scopes,
        kind=model.get("kind", "user"),
    )


async def hub_user(name: str, token: str | None) -> httpx.Response:
    """The hub's answer to GET /hub/api/users/{name}, asked with `token` (the caller's: the hub's permissions apply)."""
    async with httpx.AsyncClient() as client:
        return await client.get(
            f"{hub_auth().api_url}/users/{quote(name, safe='')}", headers={"Authorization": f"token {token}"}
        )


# A route parameter `user: CurrentUser` is `user: HubUser = Depends(current_user)`, short enough for one-line routes.
CurrentUser = Annotated[HubUser, Depends(current_user)]


METRICS_SCOPE = "read:metrics"  # JupyterHub's own scope for its /hub/metrics; Prometheus' service token holds it


async def metrics_reader(user: HubUser = Depends(current_user)) -> HubUser:
    """FastAPI dependency for `/metrics`: per-model counts and names are not for every user."""
    if not (user.admin or METRICS_SCOPE in user.scopes):
        raise HTTPException(403, f"/metrics needs a token with the {METRICS_SCOPE} scope (or an admin's)")
    return user


async def admin_user(user: HubUser = Depends(current_user)) -> HubUser:
    """FastAPI dependency for admin-only endpoints."""
    if not user.admin:
        raise HTTPException(403, "admin only")
    return user
