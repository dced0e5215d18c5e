"""One settings file for the hub and its services: `openledger.toml`, overridable by `OPENLEDGER_*` env vars.

`OPENLEDGER_CONFIG` names another file; nested keys use `__`, e.g. `OPENLEDGER_HUB__PORT=8001`.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from hub.datanets.config import DatanetSettings
from hub.governance.config import GovernanceSettings
from hub.rewards.config import RewardSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETTINGS_FILE = REPO_ROOT / "openledger.toml"


class SettingsError(Exception):
    """The settings file is missing, unreadable or invalid; the message says what to do."""


class PathSettings(BaseModel):
    data_dir: Path = Path(".openledger-data")


class HubSettings(BaseModel):
    ip: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    hub_port: int = Field(8081, ge=1, le=65535)
    proxy_api_port: int = Field(8001, ge=1, le=65535)
    # passwords: admin password, demo password for demo users only, a password of their own for everyone else
    # ("shared-password" is the old name of the same). github / generic-oauth: OAuthenticator.
    authenticator: Literal["passwords", "shared-password", "github", "generic-oauth"] = "passwords"
    shared_password: str = ""
    admin_users: list[str] = ["admin"]
    demo_users: list[str] = ["demo"]
    instructors: list[str] = []


class SpawnerSettings(BaseModel):
    # auto: "system" when the hub runs as root (one OS account per user), else "none" (single-user developer mode).
    user_isolation: Literal["auto", "none", "system"] = "auto"
    system_user_prefix: str = Field("ol-", pattern=r"^[a-z_][a-z0-9_-]{0,15}$")
    home_root: Path = Path("/home")
    mem_limit: str = Field("4G", pattern=r"^\s*\d+(\.\d+)?\s*[KMGTkmgt]?(i?[Bb])?\s*$")  # per server; "0": none
    max_processes: int = Field(512, ge=0)  # per server; 0: none
    gpus: str = "auto"
    slots_per_gpu: int = Field(1, ge=1, le=64)
    require_gpu: bool = False
    start_timeout: int = Field(120, ge=5)
    # Servers starting at once; more are refused with "try again shortly" (429). 0: 4 per CPU core — each start
    # costs ~3.3 s of CPU here, so a class logging in together would otherwise all hit start_timeout at once.
    concurrent_spawn_limit: int = Field(0, ge=0)
    # Offer the plain Python 3 kernel (no `ol`) beside the OpenLedger one; off, so newcomers cannot pick it by mistake.
    python_kernel: bool = False


class ServiceSettings(BaseModel):
    # Every service's JSON requests (uploads have their own limits): body bytes and nesting depth (hub.request_limits).
    max_body_bytes: int = Field(1 << 20, ge=1024)
    max_json_depth: int = Field(64, ge=2, le=1000)
    platform_port: int = Field(10101, ge=1, le=65535)
    openlora_port: int = Field(10102, ge=1, le=65535)
    chain_port: int = Field(10103, ge=1, le=65535)
    cull_idle_timeout: int = Field(3600, ge=0)
    # Seconds the hub waits for each managed service to answer at start (JupyterHub's own default is 30 s).
    start_timeout: int = Field(300, ge=5)
    # The OS account the platform, openlora and chain services run as on a multi-user hub; it alone owns the data dir.
    run_as: str = Field("openledger", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")


class ChainSettings(BaseModel):
    rpc_url: str = ""
    chain_id: int = Field(31337, ge=1)
    anvil_port: int = Field(8545, ge=1, le=65535)
    # When a mined write counts as confirmed (hub.relay.finality). auto: the embedded anvil's state on disk; a dev
    # node's head minus `confirmations`; any other node's `safe` block.
    finality: Literal["auto", "latest", "safe", "finalized"] = "auto"
    confirmations: int = Field(0, ge=0, le=10_000)
    reverify_seconds: int = Field(900, ge=0)  # confirmed writes this young are re-checked against the chain
    restart_max_backoff: float = Field(30, ge=1)  # seconds between tries to restart a dead embedded anvil, at most
    # OPEN minted once to every hub user's wallet at their first platform call, so a newcomer can pay for questions.
    # Only on a local dev chain (the embedded anvil): a real chain mints nothing, whatever this says.
    welcome_grant: Decimal = Field(Decimal(20), ge=0, le=1000)


class DatabaseSettings(BaseModel):
    url: str = ""


class BlobSettings(BaseModel):
    url: str = ""


class ModelSettings(BaseModel):
    base_model: str = "smollm2-135m-instruct"
    max_upload_bytes: int = Field(1 << 30, ge=1024)  # one published adapter with its index
    serve_device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$")  # where OpenLoRA runs (a GPU: "cuda:1")
    serve_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 where native


class Settings(BaseSettings):
    """Everything configurable; see `openledger.toml` for the meaning of each key."""

    model_config = SettingsConfigDict(env_prefix="OPENLEDGER_", env_nested_delimiter="__", extra="forbid")

    settings_file: Path = DEFAULT_SETTINGS_FILE
    paths: PathSettings = PathSettings()
    hub: HubSettings = HubSettings()
    spawner: SpawnerSettings = SpawnerSettings()
    services: ServiceSettings = ServiceSettings()
    chain: ChainSettings = ChainSettings()
    database: DatabaseSettings = DatabaseSettings()
    blobs: BlobSettings = BlobSettings()
    models: ModelSettings = ModelSettings()
    datanets: DatanetSettings = DatanetSettings()
    rewards: RewardSettings = RewardSettings()
    governance: GovernanceSettings = GovernanceSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Env vars win over the file, which is passed in as init values by load_settings().
        return (env_settings, init_settings)

    @cached_property
    def data_dir(self) -> Path:
        """The data dir as an absolute path (relative paths are relative to the settings file)."""
        path = self.paths.data_dir
        return path if path.is_absolute() else (self.settings_file.parent / path).resolve()

    @property
    def isolation(self) -> Literal["none", "system"]:
        """The isolation in force: `auto` means one OS account per user exactly when the hub runs as root."""
        mode = self.spawner.user_isolation
        if mode == "auto":
            return "system" if os.geteuid() == 0 else "none"
        return mode

    @property
    def hub_dir(self) -> Path:
        """The hub's own state (its database, cookie secret, proxy token, pid files): root only."""
        return self.data_dir / "hub"

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'openledger.sqlite'}"

    @property
    def blobs_url(self) -> str:
        return self.blobs.url or str(self.data_dir / "blobs")

    @property
    def public_url(self) -> str:
        return f"http://{self.hub.ip}:{self.hub.port}"

    @property
    def anvil_rpc_url(self) -> str:
        """The embedded anvil's IPC socket: in the service account's own folder, so no user's process reaches it."""
        return str(self.data_dir / "chain" / "anvil.ipc")

    @property
    def chain_rpc_url(self) -> str:
        """Where the platform sends JSON-RPC: the configured node, or the embedded anvil."""
        return self.chain.rpc_url or self.anvil_rpc_url


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(
            f"settings file {path} not found: restore it with `git checkout openledger.toml` "
            "or point OPENLEDGER_CONFIG at another file"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"settings file {path} is not valid TOML ({err}): fix that line") from None


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the settings file (default: `$OPENLEDGER_CONFIG` or the repo's `openledger.toml`) plus env vars."""
    settings_file = Path(path or os.environ.get("OPENLEDGER_CONFIG") or DEFAULT_SETTINGS_FILE).resolve()
    values = _read_toml(settings_file)
    try:
        return Settings(settings_file=settings_file, **values)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise SettingsError(f"settings in {settings_file} (or OPENLEDGER_* env) are invalid: {problems}") from None
