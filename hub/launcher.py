"""`make run` / `openledger-hub`: check the machine, then start JupyterHub with the OpenLedger config.

Every problem found before start is reported as one line that says what to do, with exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from hub.host import HostSetupError, prepare_host
from hub.lifecycle import die_with_parent
from hub.paths import MissingToolError, node_bin, require_program
from hub.secrets import ensure_secrets
from hub.settings import REPO_ROOT, Settings, SettingsError, load_settings
from openledger_sdk.errors import OpenLedgerError


class PreflightError(Exception):
    """The platform cannot start on this machine as configured; the message says how to fix it."""


def _port_owner_hint(setting: str) -> str:
    env_name = "OPENLEDGER_" + setting.upper().replace(".", "__")
    return f"stop the program using it or choose another port with {env_name}=<port>"


def check_port_free(host: str, port: int, setting: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise PreflightError(
                    f"port {port} ({setting}) is already in use: {_port_owner_hint(setting)}"
                ) from None
            raise PreflightError(f"cannot use {host}:{port} ({setting}): {err.strerror}") from None


def ports_to_check(settings: Settings) -> list[tuple[str, int, str]]:
    ports = [
        (settings.hub.ip, settings.hub.port, "hub.port"),
        ("127.0.0.1", settings.hub.hub_port, "hub.hub_port"),
        ("127.0.0.1", settings.hub.proxy_api_port, "hub.proxy_api_port"),
        ("127.0.0.1", settings.services.platform_port, "services.platform_port"),
        ("127.0.0.1", settings.services.openlora_port, "services.openlora_port"),
        ("127.0.0.1", settings.services.chain_port, "services.chain_port"),
    ]
    return ports  # the embedded anvil listens in a network namespace of its own: its port is no host port


def preflight(settings: Settings) -> None:
    """Everything that would otherwise fail later with a long traceback."""
    try:
        require_program("node", "install Node.js 20+ (Debian: apt-get install -y nodejs)")
        node_bin("configurable-http-proxy")
        if not settings.chain.rpc_url:
            node_bin("anvil")
    except MissingToolError as err:
        raise PreflightError(str(err)) from None
    singleuser = Path(sys.executable).parent / "jupyterhub-singleuser"
    if not singleuser.exists():
        raise PreflightError(f"{singleuser} is missing: run `make install` to set up the Python environment")
    for host, port, setting in ports_to_check(settings):
        check_port_free(host, port, setting)
    settings.data_dir.mkdir(parents=True, exist_ok=True)


def ensure_base_model(settings: Settings) -> Path:
    """Convert the catalog base model into the data dir once (about 30 s on 2 cores); later starts skip it."""
    from openledger_sdk.catalog import convert

    return convert(settings.models.base_model, settings.data_dir / "models")


@dataclass
class HubProcess:
    """A started JupyterHub and where it keeps its log and its proxy's pid."""

    popen: subprocess.Popen
    settings: Settings
    log_file: Path | None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the hub's process group (hub, services, anvil) and the proxy; SIGKILL what is left."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        # JupyterHub starts the proxy in a session of its own and stops it on a clean exit only: a hub
        # that crashed during start leaves it running, holding the public port.
        _kill_pid_file(self.settings.hub_dir / "proxy.pid")


def _kill_pid_file(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return


def start_hub(settings: Settings, log_file: Path | None = None) -> HubProcess:
    """Lay out the host (multi-user: service account, owners), then start JupyterHub (which starts the proxy and
    the managed services) in the background."""
    prepare_host(settings)
    env = dict(os.environ, OPENLEDGER_CONFIG=str(settings.settings_file), PYTHONUNBUFFERED="1")
    # The hub imports hub.* from this checkout (as its config file and services do), not from wherever the venv's
    # editable install points: a second worktree sharing the venv would otherwise run the other one's hub config.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    output = log_file.open("ab") if log_file else None
    popen = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(REPO_ROOT / "jupyterhub_config.py")],
        cwd=settings.data_dir,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        start_new_session=True,  # so the hub and everything it starts can be stopped as one group
        preexec_fn=die_with_parent,  # and it stops (cleanly, SIGTERM) when the launcher is killed
        umask=0o077,  # the hub's database, pid files and logs are for the hub alone
    )
    return HubProcess(popen, settings, log_file)


def wait_until_ready(hub: HubProcess, timeout: float = 120) -> None:
    """Wait until the public URL answers the hub's health check and every managed service is up."""
    settings = hub.settings
    deadline = time.monotonic() + timeout
    pending = [f"{settings.public_url}/hub/health"] + [
        f"{settings.public_url}/services/{name}/health" for name in ("platform", "chain")
    ]
    where = f"; see {hub.log_file}" if hub.log_file else ""
    while pending:
        if hub.popen.poll() is not None:
            raise PreflightError(f"JupyterHub exited with code {hub.popen.returncode} during start{where}")
        if time.monotonic() > deadline:
            raise PreflightError(
                f"the platform did not become ready in {timeout:.0f} s: waiting for {pending[0]}{where}"
            )
        try:
            if httpx.get(pending[0], timeout=2).status_code == 200:
                pending.pop(0)
                continue
        except httpx.HTTPError:
            pass
        time.sleep(0.3)


def banner(settings: Settings) -> str:
    secrets = ensure_secrets(settings.data_dir, settings.hub.shared_password)
    demo = settings.hub.demo_users[0] if settings.hub.demo_users else "<any allowed user>"
    lines = [
        "",
        f"  OpenLedger Notebooks is running at {settings.public_url}/",
        f"  Log in as {demo!r} with password {secrets.user_password!r}",
    ]
    if settings.isolation == "none":
        lines.append(
            "  Single-user developer mode (not root): only this user can start a server. For a multi-user hub "
            "run it as root."
        )
    if settings.hub.admin_users:
        lines.append(f"  Admin: {settings.hub.admin_users[0]!r} with password {secrets.admin_password!r}")
    lines += [f"  Data: {settings.data_dir}   Stop: Ctrl-C", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openledger-hub", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only run the pre-start checks")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        from hub.supervisor import HubSupervisor, reap_leftovers  # imports this module

        if not args.check:
            reap_leftovers(settings.hub_dir)  # a proxy or hub an earlier, killed run left holding the ports
        preflight(settings)
        if args.check:
            print("openledger: all pre-start checks passed")
            return 0
        ensure_secrets(settings.data_dir, settings.hub.shared_password)
        print(f"openledger: base model ready in {ensure_base_model(settings)}", flush=True)
        log_file = settings.hub_dir / "hub.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        print(f"openledger: starting; the hub's log is {log_file}", flush=True)
        # Restarts the hub when it dies; SIGTERM / Ctrl-C stop everything (hub.supervisor).
        return HubSupervisor(settings, log_file).run()
    except (SettingsError, PreflightError, HostSetupError, OpenLedgerError) as err:
        print(f"openledger: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
