"""The class progress table: hub facts (server, last activity) plus the platform's per-user counters."""

from __future__ import annotations

import httpx

from hub.workshop.hub_api import HubAPI


def class_progress(api: HubAPI, users: list[str], token: str) -> list[dict]:
    counters: dict[str, dict] = {}
    if users:
        answer = httpx.get(
            f"{api.hub_url}/services/platform/api/admin/progress",
            params={"users": ",".join(users)},
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        if answer.status_code == 200:
            counters = answer.json()
    rows = []
    for user in users:
        model = api.user(user) or {}
        server = model.get("servers", {}).get("")
        state = "none" if server is None else ("ready" if server.get("ready") else "starting")
        rows.append(
            {
                "user": user,
                "server": state,
                "last_activity": model.get("last_activity") or "-",
                **counters.get(user, {}),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no students)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    widths = {column: max(len(column), *(len(str(row.get(column, "-"))) for row in rows)) for column in columns}
    lines = ["  ".join(column.ljust(widths[column]) for column in columns)]
    lines += ["  ".join(str(row.get(column, "-")).ljust(widths[column]) for column in columns) for row in rows]
    return "\n".join(lines)
