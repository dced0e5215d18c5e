"""Workshop load: K students at once against the real hub, for K = 5, 10, 20 (one command, one run).

    .venv/bin/python bench/workshop_load.py [--users 5,10,20]

Each simulated student, all K concurrently (asyncio): logs in through the hub's login form and asks the token
API for a token, starts their server through the REST API and follows its progress until ready, starts an
OpenLedger kernel through the proxy and runs one cell over the kernel websocket (the SDK is preloaded as `ol`),
then sends one chat request to OpenLoRA. Users are created by the admin before a round, as the workshop tool
does; after it their servers are stopped and the users deleted, so every round starts cold.
Writes bench/results/workshop_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import connect as ws_connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hub_bench import command_line, machine_info, percentile, running_hub, versions, write_result  # noqa: E402
from hub.datanets.demo_data import DEMO_NAME  # noqa: E402
from tests.hub_harness import RunningHub  # noqa: E402

T = TypeVar("T")
RESULTS = Path(__file__).parent / "results" / "workshop_load.json"
DEFAULT_KS = (5, 10, 20)
KERNEL = "openledger-python"
# What a student's first cell does: who am I, which datanets are there (two calls to the platform service).
CELL = 'import json; print(json.dumps({"user": ol.whoami()["name"], "datanets": [d.name for d in ol.datanets.list()]}))'
CHAT_PROMPT = "Hello! In one sentence, what is a datanet?"
# The hub limits a workshop runs into first; unset ones are JupyterHub's defaults.
HUB_LIMITS = ("concurrent_spawn_limit", "active_server_limit")
SPAWNER_LIMITS = ("start_timeout", "http_timeout")


@dataclass(frozen=True)
class Limits:
    """Per-stage deadlines of one student, generous: a slow stage is a result, a stuck one a failure."""

    login_s: float = 60
    spawn_s: float = 300
    cell_s: float = 180
    chat_s: float = 120


@dataclass
class StudentRun:
    user: str
    login_s: float | None = None
    spawn_s: float | None = None
    spawn_retries: int = 0  # times the hub said "too many servers starting, try again" (429) before accepting
    cell_s: float | None = None  # kernel start + execute, what the student waits for on their first cell
    execute_s: float | None = None  # from the websocket being open until the kernel is idle again
    chat_s: float | None = None
    cell_output: dict[str, Any] | None = None
    chat_reply: str | None = None
    failed_stage: str | None = None
    error: str | None = None
    stages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


class StageError(Exception):
    """A stage got an answer it should not have; the message says what came back."""


def _describe(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:300]}"


def _check(response: httpx.Response, ok: tuple[int, ...] = (200, 201)) -> httpx.Response:
    if response.status_code not in ok:
        raise StageError(_describe(response))
    return response


# -- one student's stages -------------------------------------------------------------------------------------
async def login(http: httpx.AsyncClient, user: str, password: str) -> str:
    """Log in through the form (as a browser does), then ask the token API for a token with the session."""
    page = _check(await http.get("/hub/login"))
    xsrf = http.cookies.get("_xsrf")
    if not xsrf:
        raise StageError(f"no _xsrf cookie from the login page ({page.status_code})")
    form = {"username": user, "password": password, "_xsrf": xsrf}
    answer = await http.post("/hub/login", data=form)
    if answer.status_code != 302 or "jupyterhub-session-id" not in http.cookies:
        raise StageError(f"login refused: {_describe(answer)}")
    body = {"note": "workshop load bench", "expires_in": 3600}
    # Cookie-authenticated API calls need the XSRF header (JupyterHub >= 4.1); login issued a new _xsrf cookie.
    headers = {"X-XSRFToken": http.cookies.get("_xsrf") or xsrf}
    token = await http.post(f"/hub/api/users/{user}/tokens", json=body, headers=headers)
    return _check(token).json()["token"]


async def spawn(http: httpx.AsyncClient, user: str, token: str, run: StudentRun) -> None:
    """Start the default server and follow the hub's progress stream until it says ready (or failed).

    While the hub is starting its limit of servers (spawner.concurrent_spawn_limit) it answers 429 with a
    Retry-After; the student tries again after that long, as the hub's page tells them to."""
    auth = {"Authorization": f"token {token}"}
    while (started := await http.post(f"/hub/api/users/{user}/server", headers=auth)).status_code == 429:
        run.spawn_retries += 1
        await asyncio.sleep(min(float(started.headers.get("Retry-After", 2)), 10))
    _check(started, ok=(201, 202))
    async with http.stream("GET", f"/hub/api/users/{user}/server/progress", headers=auth) as events:
        _check(events, ok=(200,))
        async for line in events.aiter_lines():
            if not line.startswith("data:"):
                continue  # keepalive comments and blank separators
            event = json.loads(line[len("data:") :])
            if event.get("failed"):
                raise StageError(event.get("message", "spawn failed"))
            if event.get("ready"):
                return
    raise StageError("the progress stream ended before the server was ready")


def execute_request(user: str, code: str) -> tuple[str, str]:
    """A Jupyter `execute_request` message for the shell channel; returns (msg_id, JSON)."""
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "username": user,
        "session": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "version": "5.3",
    }
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    message = {"header": header, "parent_header": {}, "metadata": {}, "channel": "shell", "content": content}
    return msg_id, json.dumps(message)


async def execute(ws_url: str, token: str, user: str, code: str) -> str:
    """Run `code` over the kernel's websocket; return its stdout, raise with the traceback on an error."""
    msg_id, request = execute_request(user, code)
    output: list[str] = []
    async with ws_connect(ws_url, additional_headers={"Authorization": f"token {token}"}, open_timeout=60) as ws:
        await ws.send(request)
        async for raw in ws:
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue  # other clients' traffic and the kernel's startup status
            kind, content = message["header"]["msg_type"], message["content"]
            if kind == "stream":
                output.append(content["text"])
            elif kind == "error":
                raise StageError(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(output)
    raise StageError("the kernel websocket closed before the cell finished")


async def run_cell(http: httpx.AsyncClient, hub_url: str, user: str, token: str, run: StudentRun) -> None:
    """Start a kernel through the proxy and run the first cell; the kernel stays, as a student's would."""
    auth = {"Authorization": f"token {token}"}
    answer = _check(await http.post(f"/user/{user}/api/kernels", json={"name": KERNEL}, headers=auth))
    ws_url = hub_url.replace("http://", "ws://", 1) + f"/user/{user}/api/kernels/{answer.json()['id']}/channels"
    opened = time.monotonic()
    stdout = await execute(ws_url, token, user, CELL)
    run.execute_s = time.monotonic() - opened
    run.cell_output = json.loads(stdout.strip().splitlines()[-1])
    if run.cell_output.get("user") != user or DEMO_NAME not in run.cell_output.get("datanets", []):
        raise StageError(f"unexpected cell output: {stdout.strip()[:300]}")


async def chat(http: httpx.AsyncClient, token: str, model: str, run: StudentRun) -> None:
    messages = [{"role": "user", "content": CHAT_PROMPT}]
    body = {"model": model, "messages": messages, "max_tokens": 16, "temperature": 0}
    headers = {"Authorization": f"Bearer {token}"}
    answer = _check(await http.post("/services/openlora/v1/chat/completions", json=body, headers=headers), ok=(200,))
    run.chat_reply = answer.json()["choices"][0]["message"]["content"]
    if not run.chat_reply:
        raise StageError(f"empty chat reply: {answer.text[:300]}")


async def timed(run: StudentRun, stage: str, seconds: float, work: Awaitable[T]) -> T:
    """Await `work` within `seconds`; store its duration as `<stage>_s`, or the failure and re-raise."""
    started = time.monotonic()
    run.stages.append(stage)
    try:
        async with asyncio.timeout(seconds):
            result = await work
    except BaseException as err:
        run.failed_stage = stage
        kind = type(err).__name__  # a stage past its deadline has no message: say how long it ran
        run.error = f"{kind}: {err}" if str(err) else f"{kind} after {time.monotonic() - started:.1f} s"
        raise
    setattr(run, f"{stage}_s", time.monotonic() - started)
    return result


async def student(hub: RunningHub, user: str, password: str, model: str, limits: Limits) -> StudentRun:
    """One student's whole session; failures end it early and are kept in the result, never raised."""
    run = StudentRun(user)
    timeout = httpx.Timeout(60, read=max(limits.spawn_s, limits.chat_s))  # the progress stream stays quiet
    async with httpx.AsyncClient(base_url=hub.url, timeout=timeout) as http:
        try:
            token = await timed(run, "login", limits.login_s, login(http, user, password))
            await timed(run, "spawn", limits.spawn_s, spawn(http, user, token, run))
            await timed(run, "cell", limits.cell_s, run_cell(http, hub.url, user, token, run))
            await timed(run, "chat", limits.chat_s, chat(http, token, model, run))
        except Exception:
            return run  # `timed` has recorded the failure
    return run


# -- a round of K students -----------------------------------------------------------------------------------
def admin_client(hub: RunningHub) -> httpx.AsyncClient:
    headers = {"Authorization": f"token {hub.secrets.admin_api_token}"}
    return httpx.AsyncClient(base_url=f"{hub.url}/hub/api", headers=headers, timeout=60)


async def stop_and_delete(admin: httpx.AsyncClient, user: str, timeout: float = 120) -> str | None:
    """Stop the user's servers and delete the user; return what went wrong, if anything."""
    if (await admin.get(f"/users/{user}")).status_code == 404:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        servers = (await admin.get(f"/users/{user}")).json().get("servers", {})
        if not servers:
            answer = await admin.delete(f"/users/{user}")
            return None if answer.status_code in (204, 404) else _describe(answer)
        for name in servers:
            # 400 while a start or stop is still pending: ask again on the next pass.
            await admin.delete(f"/users/{user}/servers/{name}" if name else f"/users/{user}/server")
        await asyncio.sleep(0.5)
    return f"{user}: servers still there after {timeout:.0f} s"


async def remove_users(hub: RunningHub, users: Sequence[str]) -> list[str]:
    async with admin_client(hub) as admin:
        problems = await asyncio.gather(*(stop_and_delete(admin, user) for user in users))
    return [problem for problem in problems if problem]


async def create_users(hub: RunningHub, users: Sequence[str]) -> dict[str, str]:
    """Create the students and return each one's own login password (issued by the hub, as the workshop tool does)."""
    async with admin_client(hub) as admin:
        _check(await admin.post("/users", json={"usernames": list(users)}), ok=(201,))
        issued = [_check(await admin.post(f"/openledger/users/{user}/password"), ok=(201,)) for user in users]
    return {user: answer.json()["password"] for user, answer in zip(users, issued, strict=True)}


async def served_model(hub: RunningHub, timeout: float = 180) -> str:
    """The base model OpenLoRA serves, once it serves (the harness does not wait for it to load its model)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=hub.url, timeout=60) as http:
        while True:
            answer = await http.get("/services/openlora/health")
            if answer.status_code == 200 and answer.json().get("status") == "ok":
                return answer.json()["model"]
            if time.monotonic() > deadline:
                raise StageError(f"OpenLoRA not ready after {timeout:.0f} s: {_describe(answer)}")
            await asyncio.sleep(1)


def stats(values: Sequence[float | None]) -> dict[str, float | int | None]:
    done = sorted(value for value in values if value is not None)
    found = {"p50": percentile(done, 0.5), "p95": percentile(done, 0.95), "max": done[-1] if done else None}
    return {"n": len(done), **{name: None if value is None else round(value, 3) for name, value in found.items()}}


def summarize(k: int, runs: Sequence[StudentRun], wall_s: float) -> dict[str, Any]:
    failures = [{"user": r.user, "stage": r.failed_stage, "error": r.error} for r in runs if not r.ok]
    return {
        "users": k,
        "wall_s": round(wall_s, 3),
        "spawn_to_ready_s": stats([r.spawn_s for r in runs]),
        "cell_s": stats([r.cell_s for r in runs]),
        "cell_execute_s": stats([r.execute_s for r in runs]),
        "chat_s": stats([r.chat_s for r in runs]),
        "login_s": stats([r.login_s for r in runs]),
        "spawn_retries_429": sum(r.spawn_retries for r in runs),
        "failures": len(failures),
        "failure_details": failures,
    }


async def workshop_round(
    hub: RunningHub, k: int, *, prefix: str = "wl", limits: Limits | None = None, model: str | None = None
) -> dict[str, Any]:
    """K students at once on a cold hub (their users are new); the summary, with every student's run."""
    limits = limits or Limits()
    model = model or await served_model(hub)
    users = [f"{prefix}{k:02d}-{i:02d}" for i in range(1, k + 1)]
    await remove_users(hub, users)  # leftovers of an interrupted run would not start cold
    passwords = await create_users(hub, users)
    load_before = machine_info()["load_average_1_5_15"]
    started = time.monotonic()
    try:
        runs = await asyncio.gather(*(student(hub, user, passwords[user], model, limits) for user in users))
        wall_s = time.monotonic() - started
    finally:
        cleanup_started = time.monotonic()
        cleanup_problems = await remove_users(hub, users)
    summary = summarize(k, runs, wall_s)
    summary.update(
        model=model,
        load_average_before=load_before,
        load_average_after=machine_info()["load_average_1_5_15"],
        cleanup_s=round(time.monotonic() - cleanup_started, 3),
        cleanup_problems=cleanup_problems,
        students=[record(run) for run in runs],
    )
    return summary


def record(run: StudentRun) -> dict[str, Any]:
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in asdict(run).items()}


def hub_limits(hub: RunningHub) -> dict[str, Any]:
    """The spawn limits this hub runs with: the configured value, or JupyterHub's default when unset."""
    from jupyterhub.app import JupyterHub
    from jupyterhub.spawner import Spawner
    from traitlets.config import Config

    from hub.hub_config import configure

    config = Config()
    configure(config, hub.settings, hub.secrets)
    found: dict[str, Any] = {}
    for section, cls, names in (("JupyterHub", JupyterHub, HUB_LIMITS), ("Spawner", Spawner, SPAWNER_LIMITS)):
        for name in names:
            default = cls.class_traits()[name].default_value
            found[f"{section}.{name}"] = config[section].get(name, default)
    return found


async def run_rounds(hub: RunningHub, ks: Sequence[int], limits: Limits) -> list[dict[str, Any]]:
    model = await served_model(hub)
    rounds = []
    for k in ks:
        print(f"round of {k} students ...", flush=True)
        rounds.append(await workshop_round(hub, k, limits=limits, model=model))
        print(one_line(rounds[-1]), flush=True)
    return rounds


def one_line(summary: dict[str, Any]) -> str:
    def part(name: str) -> str:
        s = summary[name]
        return f"{name} p50 {s['p50']} p95 {s['p95']} max {s['max']}"

    parts = [f"wall {summary['wall_s']} s"] + [part(name) for name in ("spawn_to_ready_s", "cell_s", "chat_s")]
    return f"K={summary['users']}: " + "; ".join(parts) + f"; failures {summary['failures']}"


def result_document(
    hub: RunningHub, rounds: list[dict[str, Any]], limits: Limits, machine_start: dict[str, Any]
) -> dict[str, Any]:
    """The JSON written: the rounds, and what is needed to judge or repeat them."""
    return {
        "command": command_line(),
        "ks": [summary["users"] for summary in rounds],
        "cell": CELL,
        "chat_prompt": CHAT_PROMPT,
        # The harness serves a tiny random model (fast to load); chat times are the service's, not a real LLM's.
        "base_model_setting": hub.settings.models.base_model,
        "stage_limits_s": asdict(limits),
        "hub_limits": hub_limits(hub),
        "machine": {**machine_start, "load_average_1_5_15_end": machine_info()["load_average_1_5_15"]},
        "versions": versions(),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default=",".join(map(str, DEFAULT_KS)), help="comma list of K (default 5,10,20)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    ks = [int(k) for k in args.users.split(",")]
    limits = Limits()
    machine_start = machine_info()
    with running_hub() as hub:
        rounds = asyncio.run(run_rounds(hub, ks, limits))
        result = result_document(hub, rounds, limits, machine_start)
    write_result(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
