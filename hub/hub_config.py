"""Everything `jupyterhub_config.py` sets, derived from the OpenLedger settings (kept here to be testable)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from gpu_spawner.limits import parse_size
from hub.dashboard_links import HANDLERS as DASHBOARD_HANDLERS
from hub.passwords import HANDLERS as PASSWORD_HANDLERS
from hub.proxy import proxy_command, with_parent
from hub.secrets import HubSecrets
from hub.settings import REPO_ROOT, Settings
from hub.workshop.hub_api import WORKSHOP_SCOPES
from hub.workshop.roster import USERNAME_PATTERN

ADMIN_SERVICE = "openledger-admin"
STUDENTS_GROUP = "students"
INSTRUCTORS_GROUP = "instructors"
PASSWORD_LOGINS = ("passwords", "shared-password")  # authenticators whose passwords the hub issues
SERVER_SCOPES = ["users:activity!user", "access:servers!server", "access:services"]
WELCOME_URL = "/lab/tree/00-welcome.ipynb"  # a server opens on the welcome notebook, which says what to do next
SERVER_CONFIG_DIR = REPO_ROOT / "extensions" / "server_config"  # every user server's Jupyter config (on its path)


def server_token_scopes(spawner: Any) -> list[str]:
    """A server's $JUPYTERHUB_API_TOKEN: the `server` role, plus the workshop scopes in an admin's default server,
    where the workshop admin notebook runs on it. The hub grants only the scopes the user holds."""
    workshop = list(WORKSHOP_SCOPES) if spawner.user.admin and not spawner.name else []
    return SERVER_SCOPES + workshop


def _service_env(settings: Settings) -> dict[str, str]:
    """Managed services start with a clean env: hand them the settings file and any OPENLEDGER_* overrides."""
    env = {key: value for key, value in os.environ.items() if key.startswith("OPENLEDGER_")}
    env["OPENLEDGER_CONFIG"] = str(settings.settings_file)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    # The service account has no home of its own: caches (transformers, matplotlib) go to its folder in the data dir.
    env["HOME"] = str(settings.data_dir / "service-home")
    return env


def managed_services(settings: Settings, secrets: HubSecrets) -> list[dict[str, Any]]:
    python = sys.executable
    env = _service_env(settings)
    services: list[dict[str, Any]] = [
        {
            "name": name,
            "url": f"http://127.0.0.1:{port}",
            "command": [python, "-m", module],
            "cwd": str(REPO_ROOT),
            "environment": env,
            "timeout": settings.services.start_timeout,  # JupyterHub's default, 30 s, is short on a busy machine
            # On a multi-user hub the services run as the account that alone owns the data dir and the key store.
            **({"user": settings.services.run_as} if settings.isolation == "system" else {}),
        }
        for name, module, port in (
            # The chain first: the platform's ledger waits for its anvil.
            ("chain", "hub.chain", settings.services.chain_port),
            ("platform", "hub.platform", settings.services.platform_port),
            ("openlora", "hub.openlora_service", settings.services.openlora_port),  # binds first, then loads
        )
    ]
    services.append({"name": ADMIN_SERVICE, "api_token": secrets.admin_api_token})
    if settings.services.cull_idle_timeout:
        services.append(
            {
                "name": "idle-culler",
                "command": with_parent(
                    [python, "-m", "jupyterhub_idle_culler", f"--timeout={settings.services.cull_idle_timeout}"]
                ),
            }
        )
    return services


def roles(settings: Settings) -> list[dict[str, Any]]:
    culler = [
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        }
    ]
    return (culler if settings.services.cull_idle_timeout else []) + [
        # Users' own tokens and their servers' tokens (the kernel's JUPYTERHUB_API_TOKEN) reach the services.
        {"name": "user", "scopes": ["self", "access:services"]},
        {"name": "server", "scopes": SERVER_SCOPES},
        {
            "name": "instructor",
            "description": "Start, stop and open the servers of students in the workshop group",
            "scopes": [
                f"admin:servers!group={STUDENTS_GROUP}",
                f"access:servers!group={STUDENTS_GROUP}",
                f"read:users!group={STUDENTS_GROUP}",
                f"list:users!group={STUDENTS_GROUP}",
                f"read:groups!group={STUDENTS_GROUP}",
            ],
            "groups": [INSTRUCTORS_GROUP],
        },
        {"name": "admin", "services": [ADMIN_SERVICE]},
    ]


def spawner_config(c: Any, settings: Settings, instance_id: str = "") -> None:
    venv_bin = Path(sys.executable).parent
    data_dir = settings.data_dir
    spawner = settings.spawner
    if settings.isolation == "system":
        c.JupyterHub.spawner_class = "gpu_spawner.spawner.GPUSpawner"
        c.GPUSpawner.system_user_prefix = spawner.system_user_prefix
        c.GPUSpawner.home_root = str(spawner.home_root)
        c.GPUSpawner.archive_root = str(data_dir / "archived-homes")
        c.GPUSpawner.instance_id = instance_id
        c.GPUSpawner.mem_limit = parse_size(spawner.mem_limit) or None
        c.GPUSpawner.max_processes = spawner.max_processes
        c.Spawner.args = []
    else:
        c.JupyterHub.spawner_class = "gpu_spawner.spawner.SharedUserGPUSpawner"
        c.SharedUserGPUSpawner.home_dir_template = str(data_dir / "homes" / "{username}")
        # Single-user developer mode: only the developer's own user (and admins) run code, as the hub's OS user.
        c.SharedUserGPUSpawner.allowed_users = [*settings.hub.demo_users[:1], *settings.hub.admin_users]
        c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []
    c.Spawner.cmd = [str(venv_bin / "jupyterhub-singleuser")]
    c.Spawner.default_url = WELCOME_URL
    c.JupyterHub.concurrent_spawn_limit = settings.spawner.concurrent_spawn_limit or 4 * (os.cpu_count() or 1)
    c.Spawner.start_timeout = settings.spawner.start_timeout
    c.Spawner.http_timeout = settings.spawner.start_timeout
    c.Spawner.server_token_scopes = server_token_scopes
    c.Spawner.environment = {
        "OPENLEDGER_HUB_URL": settings.public_url,
        # The workshop admin notebook reads the hub's settings (homes, admin names) from the same file.
        "OPENLEDGER_CONFIG": str(settings.settings_file),
        "OPENLEDGER_MODELS_DIR": str(data_dir / "models"),
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HF_HUB_OFFLINE": "1",
        # OpenMP threads sleep instead of spinning while they wait for each other. On a shared CPU (a workshop: many
        # kernels, the services) spinning threads steal the cores their peers need: notebook 03's training ran 6x
        # slower under load with the default policy (bench/first_run.py measures both), and no slower alone.
        "OMP_WAIT_POLICY": "PASSIVE",
        "JUPYTER_CONFIG_PATH": str(SERVER_CONFIG_DIR),
        "JUPYTER_PATH": str(SERVER_CONFIG_DIR / "data"),  # the dashboards' Voila template
        "OPENLEDGER_PYTHON_KERNEL": "1" if spawner.python_kernel else "0",
    }
    c.GPUSlotMixin.gpus = settings.spawner.gpus
    c.GPUSlotMixin.slots_per_gpu = settings.spawner.slots_per_gpu
    c.GPUSlotMixin.require_gpu = settings.spawner.require_gpu
    c.GPUSlotMixin.state_file = str(settings.hub_dir / "gpu-slots.json")
    c.GPUSlotMixin.templates_dir = str(REPO_ROOT / "templates" / "notebooks")
    c.GPUSlotMixin.admin_templates_dir = str(REPO_ROOT / "templates" / "instructor")
    # A user's named server "dashboards" is Voila-only, rooted in the curated dashboards folder (docs/dashboards.md).
    c.GPUSlotMixin.dashboards_server_name = "dashboards"
    c.GPUSlotMixin.dashboards_dir = str(REPO_ROOT / "extensions" / "dashboards")


def authenticator_config(c: Any, settings: Settings, secrets: HubSecrets) -> None:
    hub = settings.hub
    if hub.authenticator in PASSWORD_LOGINS:
        c.JupyterHub.authenticator_class = "hub.passwords.OpenLedgerAuthenticator"
        c.OpenLedgerAuthenticator.password_file = str(secrets.directory / "user-passwords.json")
        c.OpenLedgerAuthenticator.admin_password = secrets.admin_password
        # The generated demo password opens the demo accounts only; every other user gets a password of their own.
        c.OpenLedgerAuthenticator.demo_password = secrets.user_password
        c.OpenLedgerAuthenticator.demo_users = set(hub.demo_users)
        c.JupyterHub.extra_handlers = list(PASSWORD_HANDLERS)
    elif hub.authenticator == "github":
        # Client id/secret and callback URL come from OAUTH_CLIENT_ID / OAUTH_CLIENT_SECRET / OAUTH_CALLBACK_URL.
        c.JupyterHub.authenticator_class = "github"
    else:
        c.JupyterHub.authenticator_class = "generic-oauth"
    c.Authenticator.admin_users = set(hub.admin_users)
    # Names end up in URLs, home paths and pod names: keep them simple (the workshop tool checks the same).
    c.Authenticator.username_pattern = USERNAME_PATTERN
    c.Authenticator.allowed_users = set(hub.demo_users) | set(hub.instructors)
    # Users created by an admin or the workshop tool (REST API) may log in too.
    c.Authenticator.allow_existing_users = True


def branding_config(c: Any) -> None:
    """The OpenLedger login page and logo (JupyterHub templates), and the hub's link to each user's dashboards."""
    c.JupyterHub.template_paths = [str(REPO_ROOT / "hub" / "templates")]
    c.JupyterHub.logo_file = str(REPO_ROOT / "hub" / "static" / "openledger-logo.png")
    earlier = c.JupyterHub.extra_handlers if "extra_handlers" in c.JupyterHub else []  # the password handler
    c.JupyterHub.extra_handlers = [*earlier, *DASHBOARD_HANDLERS]


def configure(c: Any, settings: Settings, secrets: HubSecrets) -> None:
    """Apply the whole hub configuration to the traitlets config object `c`."""
    c.JupyterHub.ip = settings.hub.ip
    c.JupyterHub.port = settings.hub.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = settings.hub.hub_port
    c.JupyterHub.db_url = f"sqlite:///{settings.hub_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(secrets.cookie_secret_file)
    c.JupyterHub.pid_file = str(settings.hub_dir / "jupyterhub.pid")
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = 3
    c.ConfigurableHTTPProxy.command = proxy_command()  # dies with the hub; closes streams of dead services
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.hub.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = secrets.proxy_auth_token
    c.ConfigurableHTTPProxy.pid_file = str(settings.hub_dir / "proxy.pid")
    c.JupyterHub.services = managed_services(settings, secrets)
    c.JupyterHub.load_roles = roles(settings)
    c.JupyterHub.load_groups = {
        INSTRUCTORS_GROUP: {"users": list(settings.hub.instructors)},
        STUDENTS_GROUP: {"users": []},
    }
    spawner_config(c, settings, secrets.instance_id)
    authenticator_config(c, settings, secrets)
    branding_config(c)
    from hub.error_pages import install  # here: only the hub process needs JupyterHub's handler classes

    install()  # failed /services/* requests answer JSON, in the service's error shape
