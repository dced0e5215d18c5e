"""Start the real platform (JupyterHub + proxy + services + anvil) on free ports in a temp data dir."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import websocket

from gpu_spawner.accounts import remove_accounts
from hub.launcher import HubProcess, preflight, start_hub, wait_until_ready
from hub.secrets import HubSecrets, ensure_secrets
from hub.settings import Settings, load_settings
from hub.workshop.steps import home_of
from tests.tiny_model import build_tiny_model


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_settings(directory: Path, **sections: dict) -> Path:
    """A settings file with free ports and a data dir under `directory`; `sections` override values."""
    values: dict[str, dict] = {
        "paths": {"data_dir": str(directory / "data")},
        "hub": {
            "port": free_port(),
            "hub_port": free_port(),
            "proxy_api_port": free_port(),
            "demo_users": ["alice", "bob"],
            "admin_users": ["admin"],
        },
        "services": {
            "platform_port": free_port(),
            "openlora_port": free_port(),
            "chain_port": free_port(),
            "cull_idle_timeout": 0,
        },
        # No welcome grant: tests count OPEN exactly; tests of the grant (and the first-run test) turn it on.
        "chain": {"anvil_port": free_port(), "welcome_grant": "0"},
        # The template notebooks explore the demo datanet, as on a `make run` hub.
        "datanets": {"seed_demo": True},
    }
    for name, overrides in sections.items():
        values.setdefault(name, {}).update(overrides)
    lines = []
    for name, table in values.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    path = directory / "openledger.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class RunningHub:
    settings: Settings
    secrets: HubSecrets
    log_file: Path

    @property
    def url(self) -> str:
        return self.settings.public_url

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"token {self.secrets.admin_api_token}"}, timeout=60
        )

    def home(self, name: str) -> Path:
        """The user's home folder (their OS account's on a multi-user hub)."""
        return home_of(self.settings, name)

    def password(self, name: str) -> str:
        """The password `name` logs in with: the demo password for demo users, else a new one of their own."""
        if name in self.settings.hub.demo_users:
            return self.secrets.user_password
        with self.admin() as admin:
            answer = admin.post(f"/hub/api/openledger/users/{name}/password")
            assert answer.status_code == 201, answer.text
            return answer.json()["password"]

    @contextmanager
    def as_service_account(self) -> Iterator[None]:
        """Run platform code in this (root) test process with the services' rights, as the services do: files it
        writes into the data dir stay theirs."""
        if os.geteuid() != 0 or self.settings.isolation != "system":
            yield
            return
        account = pwd.getpwnam(self.settings.services.run_as)
        os.setegid(account.pw_gid)
        os.seteuid(account.pw_uid)
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)

    def install_base_model(self, source: Path, name: str) -> Path:
        """Copy a model folder into the platform's base models, readable by every account (as an admin must)."""
        target = self.settings.data_dir / "models" / name
        shutil.copytree(source, target)
        for path in [target, *target.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        return target

    def as_token(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"token {token}"}, timeout=60)

    def ensure_user(self, name: str) -> str:
        """Create the user if needed and return a fresh API token for them."""
        with self.admin() as admin:
            if admin.get(f"/hub/api/users/{name}").status_code == 404:
                admin.post(f"/hub/api/users/{name}").raise_for_status()
            answer = admin.post(f"/hub/api/users/{name}/tokens", json={"note": "test", "expires_in": 3600})
            answer.raise_for_status()
            return answer.json()["token"]

    def fund(self, name: str, open_amount: str = "10") -> None:
        """Give the user OPEN (and gas) from the faucet: priced models refuse askers who cannot pay."""
        deadline = time.monotonic() + 90
        with self.admin() as admin:
            while True:
                answer = admin.post(
                    "/services/platform/api/admin/faucet", json={"user": name, "open": open_amount, "eth": "1"}
                )
                if answer.status_code != 503 or time.monotonic() > deadline:  # 503: the ledger is still coming up
                    break
                time.sleep(0.5)
        assert answer.status_code == 200, answer.text

    def spawn(self, name: str, timeout: float = 120) -> float:
        """Start the user's server; return seconds from the request until the server answers."""
        started = time.monotonic()
        with self.admin() as admin:
            answer = admin.post(f"/hub/api/users/{name}/server")
            assert answer.status_code in (201, 202), answer.text
            while time.monotonic() - started < timeout:
                model = admin.get(f"/hub/api/users/{name}").json()
                server = model.get("servers", {}).get("", {})
                if server.get("ready"):
                    return time.monotonic() - started
                time.sleep(0.25)
        raise TimeoutError(f"{name}'s server not ready after {timeout} s; see {self.log_file}")

    def refused_before_body(self, path: str, token: str, content_type: str, length: int, first_bytes: bytes) -> str:
        """POST that claims `length` bytes but sends only `first_bytes` (httpx would try to send them all): asserts a
        413 within 10 s, i.e. without waiting for the body; returns the start of the answer."""
        started = time.monotonic()
        ip, port = self.settings.hub.ip, self.settings.hub.port
        head = (
            f"POST {path} HTTP/1.1\r\n"
            f"Host: {ip}:{port}\r\n"
            f"Authorization: token {token}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        )
        with socket.create_connection((ip, port), timeout=15) as sock:
            sock.sendall(head.encode() + first_bytes)
            answer = sock.recv(65536).decode(errors="replace")
        assert answer.startswith("HTTP/1.1 413"), answer[:300]
        assert time.monotonic() - started < 10
        return answer

    def stop_server(self, name: str) -> None:
        with self.admin() as admin:
            admin.delete(f"/hub/api/users/{name}/server")
            for _ in range(120):
                if not admin.get(f"/hub/api/users/{name}").json().get("servers"):
                    return
                time.sleep(0.25)


SHARED_PREFIX = "openledger-hub-"


def start_platform(directory: Path, **sections: dict) -> tuple[RunningHub, HubProcess]:
    log_file = directory / "hub.log"  # stays with the test's own temp folder, for reading after a failure
    if os.geteuid() == 0:
        # A multi-user hub, as `make run` starts it as root. Its service account and users' accounts must pass
        # through the folders above the data dir, settings file and homes: pytest's temp root is 0700 (and pytest
        # re-secures it at every session), so such a hub lives in a folder of its own, removed at stop.
        shared = Path(tempfile.mkdtemp(prefix=SHARED_PREFIX))
        shared.chmod(0o711)
        if (directory / "data").is_dir():  # what a test prepared in the data dir before the start comes along
            shutil.copytree(directory / "data", shared / "data", symlinks=True)
        directory = shared
    # OpenLoRA serves a tiny random model here (seconds to load); the real base model is for `make run`.
    base = directory / "data" / "models" / "tiny-base"
    if not base.exists():
        build_tiny_model(base, seed=7)  # other weights than tests that install their own tiny base
    sections.setdefault("models", {"base_model": str(base)})
    if os.geteuid() == 0:  # OS accounts of its own per test hub
        (directory / "homes").mkdir(exist_ok=True)
        spawner = {"home_root": str(directory / "homes"), "system_user_prefix": f"t{uuid.uuid4().hex[:5]}-"}
        sections["spawner"] = spawner | sections.get("spawner", {})
    settings_file = write_settings(directory, **sections)
    settings = load_settings(settings_file)
    preflight(settings)
    secrets = ensure_secrets(settings.data_dir)
    process = start_hub(settings, log_file)
    try:
        wait_until_ready(process, timeout=180)
    except Exception:
        stop_platform(settings, process)
        raise
    return RunningHub(settings, secrets, log_file), process


def stop_platform(settings: Settings, process: HubProcess) -> None:
    """Stop the hub and remove the OS accounts it created (their homes go with the test's temp folder)."""
    process.stop()
    if os.geteuid() == 0:
        remove_accounts(ensure_secrets(settings.data_dir).instance_id)
        folder = settings.settings_file.parent
        if folder.name.startswith(SHARED_PREFIX):
            shutil.rmtree(folder, ignore_errors=True)


def run_in_kernel(
    hub: RunningHub, user: str, token: str, code: str, kernel: str = "openledger-python", timeout: float = 120
) -> str:
    """Start a kernel in the user's server through the hub, run `code`, return its stdout (raise on error)."""
    with hub.as_token(token) as client:
        answer = client.post(f"/user/{user}/api/kernels", json={"name": kernel})
        answer.raise_for_status()
        kernel_id = answer.json()["id"]
    ws_url = hub.url.replace("http://", "ws://") + f"/user/{user}/api/kernels/{kernel_id}/channels"
    conn = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=timeout)
    try:
        msg_id = uuid.uuid4().hex
        conn.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": user,
                        "session": uuid.uuid4().hex,
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "buffers": [],
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        output: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(conn.recv())
            state = message.get("content", {}).get("execution_state")
            if message["header"]["msg_type"] == "status" and state in ("restarting", "dead"):
                # The kernel died (e.g. killed at its memory limit): the answer will never come.
                raise RuntimeError(f"kernel {state}: it died while running the code")
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["header"]["msg_type"]
            if kind == "stream":
                output.append(message["content"]["text"])
            elif kind == "error":
                raise RuntimeError("kernel error: " + "\n".join(message["content"]["traceback"]))
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                return "".join(output)
        raise TimeoutError(f"no answer from the kernel in {timeout} s")
    finally:
        conn.close()
        with hub.as_token(token) as client:
            client.delete(f"/user/{user}/api/kernels/{kernel_id}")
