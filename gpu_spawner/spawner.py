"""JupyterHub spawners that give each user server a GPU slot (or the CPU) and seed its home with templates.

Lifecycle, as JupyterHub 6 drives it (jupyterhub/user.py, app.py):

- spawn: `clear_state()` (drops any old slot), `start()` (allocates, seeds the home, launches),
  then `get_state()` is saved in the hub database.
- stop: `stop()` releases; `User.stop` then calls `clear_state()` (releases again: idempotent),
  and so does `LocalProcessSpawner.poll()` whenever it finds the process gone.
- hub restart: spawners of servers the database calls running are rebuilt and `load_state()` restores
  their slot; the first one also creates the shared allocator, which drops every allocation whose
  server the database no longer lists. `check_spawner` then polls: a dead server is cleared
  (released), a live one keeps its slot.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner
from tornado.web import HTTPError
from traitlets import Bool, Integer, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from .accounts import Account, AccountError, ensure_account, system_name
from .allocator import Slot, SlotAllocator, shared_allocator
from .home import Owner, ensure_home, seed_home
from .inventory import parse_gpu_spec
from .limits import ServerLimits, create_limits

SINGLE_USER_REFUSAL = (
    "This hub runs in single-user developer mode (not as root), so a server for {name!r} would run with the hub's own "
    "rights; to run a multi-user hub, start it as root (sudo make run): each user then gets their own OS account"
)
CPU_ENV = {"CUDA_VISIBLE_DEVICES": "", "OPENLEDGER_DEVICE": "cpu"}
DASHBOARDS_DEFAULT_URL = "/voila/render/contributor.ipynb"
# The dashboards server only renders Voila pages: no JupyterLab UI, no terminals, no language servers; errors in a
# dashboard show a message, never a traceback.
DASHBOARDS_ARGS = [
    "--ServerApp.jpserver_extensions=jupyterlab=False",
    "--ServerApp.jpserver_extensions=jupyter_lsp=False",
    "--ServerApp.jpserver_extensions=jupyter_server_terminals=False",
    "--ServerApp.terminals_enabled=False",
    "--VoilaConfiguration.show_tracebacks=False",
    # An upload widget sends the whole file in one websocket message (tornado's default cap: 10 MiB); this lets a
    # file up to the platform's default upload limit (64 MiB) through, and the platform has the last word.
    '--ServerApp.tornado_settings={"websocket_max_message_size": 83886080}',
]


def no_slot_error(capacity: int) -> HTTPError:
    """The 503 shown to a user when `require_gpu` is on and no slot is free."""
    if capacity == 0:
        message = "This hub has no GPU to give out and requires one; ask an admin"
    else:
        message = f"No GPU slot is free (all {capacity} in use); try again later or ask an admin"
    return _user_facing_error(503, message)


def dashboards_missing_error(folder: str) -> HTTPError:
    """The 500 shown when the configured dashboards folder is missing (a deployment error, not the user's)."""
    return _user_facing_error(500, f"The dashboards folder {folder} is missing on the hub; ask an admin")


def _user_facing_error(status: int, message: str) -> HTTPError:
    """An HTTPError whose message JupyterHub shows as is, instead of a generic "Failed to start your server"."""
    error = HTTPError(status, message)
    error.jupyterhub_message = message  # type: ignore[attr-defined]
    return error


class GPUSlotMixin(LoggingConfigurable):
    """Put in front of a LocalProcessSpawner: a GPU slot per server, CPU fallback, template notebooks."""

    gpus = Unicode(
        "auto",
        help='GPUs to hand out: "auto" (nvidia-smi), "none", or nvidia-smi indices like "0,1".',
    ).tag(config=True)
    slots_per_gpu = Integer(1, min=1, help="Servers per GPU; above 1 each gets a memory fraction.").tag(config=True)
    require_gpu = Bool(False, help="Refuse to start (503) when no slot is free, instead of starting on CPU.").tag(
        config=True
    )
    state_file = Unicode(
        "jupyterhub-gpu-slots.json",
        help="JSON file of the slot table, shared by all spawners of the hub (relative: to the hub's cwd).",
    ).tag(config=True)
    templates_dir = Unicode("", help="Folder of notebooks copied into a home on first spawn; empty: none.").tag(
        config=True
    )
    admin_templates_dir = Unicode(
        "", help="Folder of notebooks also copied into admins' homes (the workshop admin notebook); empty: none."
    ).tag(config=True)
    dashboards_server_name = Unicode(
        "dashboards", help="Name of the named server that serves the curated Voila dashboards (see dashboards_dir)."
    ).tag(config=True)
    dashboards_dir = Unicode(
        "",
        help="Root folder of the dashboards server: Voila renders only the notebooks in it; on CPU, no GPU slot, "
        "no templates. Empty: a server of that name is an ordinary one.",
    ).tag(config=True)
    dashboards_args = List(
        Unicode(), DASHBOARDS_ARGS, help="Arguments added to Spawner.args for the dashboards server."
    ).tag(config=True)

    @validate("gpus")
    def _validate_gpus(self, proposal: Any) -> str:
        value = proposal["value"]
        if value.strip().lower() != "auto":
            parse_gpu_spec(value)  # a bad spec fails at config load, not at the first spawn
        return value

    _slot: Slot | None = None

    @property
    def slot(self) -> Slot | None:
        """The GPU slot of the running server, None when it runs on CPU or is stopped."""
        return self._slot

    @property
    def serves_dashboards(self) -> bool:
        """True for the user's dashboards server: a Voila-only server rooted in the curated dashboards folder."""
        return bool(self.dashboards_dir) and self.name == self.dashboards_server_name  # type: ignore[attr-defined]

    @property
    def slot_owner(self) -> str:
        """Allocation key: named servers of one user each get their own slot."""
        return f"{self.user.name}/{self.name}"

    # --- the shared allocator ---

    def _running_owners(self) -> set[str] | None:
        """Owners of every server the hub database calls running (or starting); None outside a hub."""
        orm_spawner = getattr(self, "orm_spawner", None)
        if orm_spawner is None:
            return None
        from jupyterhub import orm
        from sqlalchemy.orm import object_session

        session = object_session(orm_spawner)
        if session is None:
            return None
        running = session.query(orm.Spawner).filter(orm.Spawner.server_id.isnot(None))
        return {f"{spawner.user.name}/{spawner.name}" for spawner in running if spawner.user is not None}

    def _create_allocator(self, path: Path) -> SlotAllocator:
        devices = parse_gpu_spec(self.gpus)
        allocator = SlotAllocator(devices, self.slots_per_gpu, path)
        self.log.info(
            "GPU slots: %d GPU(s) x %d slot(s) = %d, table in %s",
            len(devices),
            self.slots_per_gpu,
            allocator.capacity,
            path,
        )
        running = self._running_owners()
        if running is not None:
            # First use in this hub process: allocations of servers that stopped while the hub was down go.
            for owner in allocator.reconcile(running):
                self.log.warning("released the GPU slot of %s: its server is no longer running", owner)
        return allocator

    @property
    def allocator(self) -> SlotAllocator:
        """The allocator shared by every spawner using the same state file."""
        return shared_allocator(self.state_file, self._create_allocator)

    # --- home ---

    def home_owner(self) -> tuple[str, Owner | None]:
        """(home folder, (uid, gid) to own what is created there, None: the hub's own user) of the server."""
        raise NotImplementedError

    def _template_dirs(self) -> list[str]:
        """The template folders for this server; reads the user's admin flag, so call it on the hub's thread."""
        if self.serves_dashboards:
            return []
        admin_dirs = [self.admin_templates_dir] if self.admin_templates_dir and self.user.admin else []
        return [folder for folder in [self.templates_dir, *admin_dirs] if folder]

    def _seed(self, home: str, owner: Owner | None, template_dirs: list[str]) -> list[Path]:
        """Create the home if missing and copy in the templates the user has not had yet."""
        # Runs in a worker thread: touches only the file system and its arguments, never the hub's ORM objects.
        if not template_dirs:
            ensure_home(home, owner, 0o700 if owner else 0o755)
            return []
        # The folders share the home's manifest: keep their file names apart.
        copied = [path for folder in template_dirs for path in seed_home(folder, home, owner)]
        if copied:
            self.log.info("copied %d template notebook(s) into %s", len(copied), home)
        return copied

    # --- Spawner API ---

    def get_env(self) -> dict[str, str]:
        env = super().get_env()  # type: ignore[misc]
        # Without a slot CUDA must see nothing: an unset CUDA_VISIBLE_DEVICES would mean every GPU.
        env.update(self._slot.env() if self._slot is not None else CPU_ENV)
        if self.serves_dashboards:
            # The server's root is the curated folder (Voila refuses paths outside it) and it opens on a dashboard.
            env["JUPYTERHUB_ROOT_DIR"] = self.dashboards_dir
            env["JUPYTERHUB_DEFAULT_URL"] = DASHBOARDS_DEFAULT_URL
        return env

    def get_args(self) -> list[str]:
        args = list(super().get_args())  # type: ignore[misc]
        return args + list(self.dashboards_args) if self.serves_dashboards else args

    async def start(self) -> Any:
        # Read everything that touches the hub's database objects here, on the event loop's thread; only
        # file work goes to worker threads (the flock can wait on another process).
        owner, allocator = self.slot_owner, self.allocator
        if self.serves_dashboards:
            # Dashboards only call the platform: a GPU slot would sit idle.
            if not await asyncio.to_thread(Path(self.dashboards_dir).is_dir):
                raise dashboards_missing_error(self.dashboards_dir)
            self._slot = None
            self.log.info("%s serves the dashboards in %s, on CPU", owner, self.dashboards_dir)
        else:
            await self._take_slot(owner, allocator)
        try:
            home, home_owner = self.home_owner()
            await asyncio.to_thread(self._seed, home, home_owner, self._template_dirs())
            return await super().start()  # type: ignore[misc]
        except BaseException:
            self._release()  # JupyterHub's cleanup would too (via clear_state); don't rely on it
            raise

    async def _take_slot(self, owner: str, allocator: SlotAllocator) -> None:
        self._slot = await asyncio.to_thread(allocator.allocate, owner)
        if self._slot is not None:
            self.log.info("%s gets %s", owner, self._slot.describe())
            return
        if self.require_gpu:
            raise no_slot_error(allocator.capacity)
        level = self.log.warning if allocator.capacity else self.log.info
        level("no GPU slot free for %s (%d in total): starting it on CPU", owner, allocator.capacity)

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)  # type: ignore[misc]
        owner, allocator = self.slot_owner, self.allocator
        released = await asyncio.to_thread(allocator.release, owner)
        self._log_release(released, owner)
        self._slot = None

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()  # type: ignore[misc]
        if self._slot is not None:
            state["gpu_slot"] = self._slot.to_dict()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)  # type: ignore[misc]
        data = state.get("gpu_slot")
        if not data:
            return
        try:
            slot = Slot.from_dict(data)
        except (KeyError, TypeError, ValueError) as err:
            self.log.error("ignoring unreadable GPU slot in the state of %s: %s", self.slot_owner, err)
            return
        orm_spawner = getattr(self, "orm_spawner", None)
        if orm_spawner is not None and orm_spawner.server is None:
            return  # the hub stopped this server (and died before clearing its state): nothing to keep
        allocator = self.allocator  # created on first use: reconciles against the hub database
        if allocator.adopt(self.slot_owner, slot):
            self._slot = slot
        else:
            self.log.error("%s of %s is held by another server; not restoring it", slot.describe(), self.slot_owner)

    def clear_state(self) -> None:
        super().clear_state()  # type: ignore[misc]
        self._release()

    def _release(self) -> None:
        # By owner, not by self._slot: also frees an allocation this spawner object never knew about.
        owner = self.slot_owner
        self._log_release(self.allocator.release(owner), owner)
        self._slot = None

    def _log_release(self, released: Slot | None, owner: str) -> None:
        if released is not None:
            self.log.info("released %s of %s", released.describe(), owner)


class GPUSpawner(GPUSlotMixin, LocalProcessSpawner):
    """Multi-user hubs (the hub runs as root): each server under its hub user's own OS account, with its own GPU
    slot and resource limits. The account is created at first spawn (gpu_spawner.accounts)."""

    system_user_prefix = Unicode("ol-", help="OS account name = prefix + hub user name (shortened if too long).").tag(
        config=True
    )
    home_root = Unicode("/home", help="Folder the OS accounts' homes are created in (mode 0700 each).").tag(config=True)
    archive_root = Unicode(
        "", help="Where the home of a deleted hub user goes when a new user of the same name arrives."
    ).tag(config=True)
    instance_id = Unicode(help="This hub's id, written into the accounts it creates (never reuse others').").tag(
        config=True
    )
    max_processes = Integer(0, min=0, help="Most processes (and threads) one server may run; 0: no limit.").tag(
        config=True
    )

    _account: Account | None = None
    _limits: ServerLimits | None = None

    @property
    def system_user(self) -> str:
        return system_name(self.system_user_prefix, self.user.name)

    async def start(self) -> Any:
        # Read the hub's ORM objects here, on the event loop's thread; useradd and cgroup writes go to a thread.
        try:
            name, user_id = self.system_user, self.user.id
            self._account = await asyncio.to_thread(
                ensure_account,
                name,
                instance=self.instance_id,
                hub_user_id=user_id,
                home_root=Path(self.home_root),
                archive_root=Path(self.archive_root or Path(self.home_root) / ".archived"),
            )
        except AccountError as err:
            raise _user_facing_error(500, str(err)) from None
        self._limits = await asyncio.to_thread(create_limits, name, int(self.mem_limit or 0), self.max_processes)
        return await super().start()

    def home_owner(self) -> tuple[str, Owner | None]:
        account = self._account
        if account is None:  # start() creates it first; only a direct call (tests) gets here
            raise HTTPError(500, f"no OS account for {self.user.name!r} yet: start the server first")
        return account.home, (account.uid, account.gid)

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        account, limits = self._account, self._limits
        if account is None or limits is None:
            raise HTTPError(500, "the server's OS account is not ready")

        def become_user() -> None:
            # Between fork and exec, as root: join the cgroups, then drop to the account with no supplementary
            # groups (none of the hub's), so the server holds exactly that user's rights.
            limits.apply_in_child()
            os.umask(0o077)
            os.setgid(account.gid)
            os.setgroups([])
            os.setuid(account.uid)
            os.chdir(account.home)

        return become_user

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        account = self._account
        if account is not None:
            env.update(USER=account.name, LOGNAME=account.name, HOME=account.home, SHELL=account.shell)
        return env

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if self._limits is not None:
            env.update(self._limits.env())
        return env


class SharedUserGPUSpawner(GPUSlotMixin, SimpleLocalProcessSpawner):
    """Single-user developer mode (the hub is not root): servers run as the hub's own OS user, homes from
    `home_dir_template`. Only `allowed_users` may start a server: anyone else's code would run with the hub's
    rights and read its secrets."""

    allowed_users = List(
        Unicode(), help="Hub users who may start a server (the developer and the admins); empty: anyone."
    ).tag(config=True)

    async def start(self) -> Any:
        if self.allowed_users and self.user.name not in self.allowed_users:
            raise _user_facing_error(403, SINGLE_USER_REFUSAL.format(name=self.user.name))
        return await super().start()

    def home_owner(self) -> tuple[str, Owner | None]:
        # SimpleLocalProcessSpawner only creates the home in the child's preexec, after Popen: too late for
        # seeding, so the mixin creates it here, owned by the hub's user.
        return self.home_dir, None
