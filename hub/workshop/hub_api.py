"""A small typed client for the JupyterHub REST API, as an admin (or instructor) token holder."""

from __future__ import annotations

import time
from typing import Any

import httpx

# What running a workshop takes (create users and groups, tokens to act as students, stop servers, the
# platform's progress table); admins hold all of it. hub_config requests these for admins' server tokens.
WORKSHOP_SCOPES = ("admin:users", "admin:groups", "admin:servers", "tokens", "access:services")


class HubAPIError(Exception):
    """The hub refused a call; the message carries the hub's own reason."""


class HubAPI:
    def __init__(self, hub_url: str, token: str, timeout: float = 60) -> None:
        self.hub_url = hub_url.rstrip("/")
        self.token = token  # the platform's services take the same token (the progress table)
        self.http = httpx.Client(
            base_url=f"{self.hub_url}/hub/api", headers={"Authorization": f"token {token}"}, timeout=timeout
        )

    def __enter__(self) -> HubAPI:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 202, 204), **kwargs: Any) -> Any:
        """One hub REST API call (`/hub/api<path>`); HubAPIError with the hub's message unless the status is ok."""
        return _checked(self.http.request(method, path, **kwargs), f"{method} {path}", ok)

    def platform(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call to the platform service (`/services/platform/<path>`) with the same token."""
        url = f"{self.hub_url}/services/platform/{path.lstrip('/')}"
        return _checked(self.http.request(method, url, **kwargs), f"{method} {url}", tuple(range(200, 300)))

    def whoami(self) -> dict:
        """The token's owner (`kind` "user" or "service") and the scopes the token holds."""
        return self.call("GET", "/user")

    def missing_scopes(self, needed: tuple[str, ...] = WORKSHOP_SCOPES) -> list[str]:
        """The scopes in `needed` this token lacks (a group-filtered scope like `admin:users!group=x` is lacking)."""
        held = set(self.whoami().get("scopes", []))
        return [scope for scope in needed if scope not in held]

    def can_log_in(self, name: str, password: str) -> bool:
        """Whether the hub's authenticator takes `password` for `name`: asks for a token with it, then revokes it."""
        body = {"auth": {"username": name, "password": password}, "note": "workshop password check", "expires_in": 60}
        # No Authorization header: the hub then authenticates the request by the `auth` in the body.
        response = httpx.post(f"{self.hub_url}/hub/api/users/{name}/tokens", json=body, timeout=self.http.timeout)
        if response.status_code != 201:
            return False
        self.call("DELETE", f"/users/{name}/tokens/{response.json()['id']}", ok=(204, 404))
        return True

    # users
    def user(self, name: str) -> dict | None:
        response = self.http.get(f"/users/{name}")
        return response.json() if response.status_code == 200 else None

    def users(self) -> list[dict]:
        return self.call("GET", "/users")

    def create_users(self, names: list[str]) -> list[str]:
        """Create the users that do not exist yet; return the names created."""
        missing = [name for name in names if self.user(name) is None]
        if not missing:
            return []
        return [model["name"] for model in self.call("POST", "/users", json={"usernames": missing})]

    def delete_user(self, name: str) -> None:
        self.call("DELETE", f"/users/{name}", ok=(204, 404))

    def new_token(self, name: str, note: str, expires_in: int = 3600) -> str:
        return self.call("POST", f"/users/{name}/tokens", json={"note": note, "expires_in": expires_in})["token"]

    # groups
    def ensure_group(self, group: str) -> None:
        if self.http.get(f"/groups/{group}").status_code == 404:
            self.call("POST", f"/groups/{group}")

    def group_members(self, group: str) -> list[str]:
        response = self.http.get(f"/groups/{group}")
        return response.json()["users"] if response.status_code == 200 else []

    def add_to_group(self, group: str, names: list[str]) -> None:
        self.call("POST", f"/groups/{group}/users", json={"users": names})

    def delete_group(self, group: str) -> None:
        self.call("DELETE", f"/groups/{group}", ok=(204, 404))

    # servers
    def start_server(self, name: str, timeout: float = 120) -> float:
        """Start the user's default server; return seconds until the hub reports it ready."""
        started = time.monotonic()
        self.call("POST", f"/users/{name}/server", ok=(201, 202, 400))  # 400: already running
        while time.monotonic() - started < timeout:
            server = (self.user(name) or {}).get("servers", {}).get("", {})
            if server.get("ready"):
                return time.monotonic() - started
            time.sleep(0.25)
        raise HubAPIError(f"{name}'s server was not ready after {timeout:.0f} s")

    def stop_server(self, name: str, timeout: float = 60) -> None:
        self.call("DELETE", f"/users/{name}/server", ok=(202, 204, 400, 404))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not (self.user(name) or {}).get("servers"):
                return
            time.sleep(0.25)
        raise HubAPIError(f"{name}'s server did not stop within {timeout:.0f} s")


def _checked(response: httpx.Response, what: str, ok: tuple[int, ...]) -> Any:
    if response.status_code not in ok:
        try:
            body = response.json()
            reason = body.get("message") or body.get("detail") or response.text  # the hub's / FastAPI's field
        except ValueError:
            reason = response.text[:300]
        raise HubAPIError(f"{what}: {response.status_code} {reason}")
    return response.json() if response.content else None
