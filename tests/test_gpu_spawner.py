"""gpu_spawner: GPU inventory, slot allocator, home seeding, the spawner mixin and KubeSpawner profiles.

This machine has no GPU: the GPUs here are mocks of what cannot exist on it (a fake `nvidia-smi` script first
on PATH, or devices named by index). No single-user server is launched either: the base spawner's process
start/stop are faked, and launching a real server is covered by the end-to-end tests elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.user import User
from tornado.web import HTTPError
from traitlets.config import Config

from gpu_spawner import (
    CPU_ENV,
    CPUOffer,
    GPUDevice,
    GPUOffer,
    GPUSpawner,
    MIGOffer,
    SharedUserGPUSpawner,
    Slot,
    SlotAllocator,
    build_profile_list,
    clear_shared_allocators,
    detect_gpus,
    inventory,
    parse_gpu_spec,
    seed_home,
)
from gpu_spawner.home import MANIFEST


@pytest.fixture(autouse=True)
def _fresh_registry():
    # Every test is a fresh hub process as far as the shared allocators are concerned.
    clear_shared_allocators()
    yield
    clear_shared_allocators()


def gpus(count: int, *, uuids: bool = True) -> list[GPUDevice]:
    """Mock GPUs (this machine has none)."""
    return [GPUDevice(i, f"GPU-{i:08d}-mock" if uuids else None, "NVIDIA H100 80GB HBM3", 81559) for i in range(count)]


# --- inventory -------------------------------------------------------------------------------------------------

FAKE_SMI = """#!/bin/sh
# Mock nvidia-smi: two GPUs, the second in MIG mode with two instances.
case "$1" in
  -L)
    echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)"
    echo "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb)"
    echo "  MIG 1g.5gb      Device  0: (UUID: MIG-b001)"
    echo "  MIG 3g.20gb     Device  1: (UUID: MIG-b002)"
    ;;
  --query-gpu=index,uuid,name,memory.total)
    [ "$2" = "--format=csv,noheader,nounits" ] || exit 2
    echo "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559"
    echo "1, GPU-bbbb, NVIDIA A100-SXM4-40GB, 40960"
    ;;
  *) exit 2 ;;
esac
"""


def install_fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(script)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_detect_gpus_parses_nvidia_smi_and_expands_mig(tmp_path, monkeypatch):
    install_fake_nvidia_smi(tmp_path, monkeypatch, FAKE_SMI)
    devices = detect_gpus()
    assert devices == [
        GPUDevice(0, "GPU-aaaa", "NVIDIA H100 80GB HBM3", 81559),
        GPUDevice(1, "MIG-b001", "NVIDIA A100-SXM4-40GB MIG 1g.5gb", 5 * 1024, "1g.5gb"),
        GPUDevice(1, "MIG-b002", "NVIDIA A100-SXM4-40GB MIG 3g.20gb", 20 * 1024, "3g.20gb"),
    ]
    assert [d.cuda_id for d in devices] == ["GPU-aaaa", "MIG-b001", "MIG-b002"]


def test_detect_gpus_without_mig_listing_keeps_whole_gpus(tmp_path, monkeypatch):
    script = FAKE_SMI.replace("  -L)\n", "  -L)\n    exit 3\n")
    install_fake_nvidia_smi(tmp_path, monkeypatch, script)
    assert [d.uuid for d in detect_gpus()] == ["GPU-aaaa", "GPU-bbbb"]


def test_detect_gpus_is_empty_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no nvidia-smi anywhere
    assert detect_gpus() == []


@pytest.mark.parametrize(
    "script",
    [
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2\nexit 9\n",
        "#!/bin/sh\nexec sleep 30\n",  # a wedged driver: must time out, not hang the hub
        "#!/bin/sh\necho 'garbage line'\necho 'x, GPU-1, name, 10'\n",
    ],
    ids=["fails", "hangs", "garbage"],
)
def test_detect_gpus_never_raises(tmp_path, monkeypatch, script):
    install_fake_nvidia_smi(tmp_path, monkeypatch, script)
    monkeypatch.setattr(inventory, "DETECT_TIMEOUT_S", 0.5)
    assert detect_gpus() == []


def test_parse_gpu_spec(tmp_path, monkeypatch):
    install_fake_nvidia_smi(tmp_path, monkeypatch, FAKE_SMI)
    assert [d.uuid for d in parse_gpu_spec("auto")] == ["GPU-aaaa", "MIG-b001", "MIG-b002"]
    assert [d.uuid for d in parse_gpu_spec(" AUTO ")] == ["GPU-aaaa", "MIG-b001", "MIG-b002"]
    assert parse_gpu_spec("none") == []
    assert parse_gpu_spec("0,1") == [GPUDevice(0), GPUDevice(1)]
    assert parse_gpu_spec(" 3 , 0 ") == [GPUDevice(3), GPUDevice(0)]
    assert parse_gpu_spec("2")[0].cuda_id == "2"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty GPU spec"),
        ("   ", "empty GPU spec"),
        ("0,,1", "'' is not a GPU index"),
        ("0,", "'' is not a GPU index"),
        ("gpu0", "'gpu0' is not a GPU index"),
        ("-1", "'-1' is not a GPU index"),
        ("1.5", "'1.5' is not a GPU index"),
        ("²", "'²' is not a GPU index"),
        ("all", "'all' is not a GPU index"),
        ("0,1,0", "GPU 0 is listed twice"),
    ],
)
def test_parse_gpu_spec_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_gpu_spec(spec)
    if spec.strip():
        assert '"auto", "none"' in str(info.value) or "twice" in str(info.value)


# --- allocator -------------------------------------------------------------------------------------------------


def test_whole_gpus_go_to_the_least_loaded_gpu_until_exhausted(tmp_path):
    allocator = SlotAllocator(gpus(2), 1, tmp_path / "slots.json")
    a, b = allocator.allocate("alice/"), allocator.allocate("bob/")
    assert (a.device.index, b.device.index) == (0, 1)
    assert allocator.allocate("carol/") is None
    assert a.env() == {
        "CUDA_VISIBLE_DEVICES": "GPU-00000000-mock",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "OPENLEDGER_DEVICE": "cuda",
    }
    assert allocator.capacity == 2


def test_fractional_slots_spread_over_gpus_and_carry_a_memory_fraction(tmp_path):
    allocator = SlotAllocator(gpus(2), 2, tmp_path / "slots.json")
    slots = [allocator.allocate(f"user{i}/") for i in range(4)]
    assert [(s.device.index, s.share) for s in slots] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert allocator.allocate("user4/") is None
    assert slots[0].env()["OPENLEDGER_GPU_FRACTION"] == "0.5"
    assert Slot(GPUDevice(0), 0, 3).env()["OPENLEDGER_GPU_FRACTION"] == "0.3333"
    assert Slot(GPUDevice(0), 0, 3).fraction * 3 <= 1
    # after a release the emptier GPU is chosen again, and the freed share is reused
    allocator.release("user0/")
    allocator.release("user2/")
    allocator.release("user1/")
    slot = allocator.allocate("late/")
    assert (slot.device.index, slot.share) == (0, 0)


def test_index_only_devices_use_the_index(tmp_path):
    allocator = SlotAllocator(parse_gpu_spec("3"), 1, tmp_path / "slots.json")
    assert allocator.allocate("alice/").env()["CUDA_VISIBLE_DEVICES"] == "3"


def test_allocate_is_idempotent_and_release_frees(tmp_path):
    allocator = SlotAllocator(gpus(1), 2, tmp_path / "slots.json")
    first = allocator.allocate("alice/")
    assert allocator.allocate("alice/") == first
    assert list(allocator.allocations()) == ["alice/"]
    assert allocator.release("alice/") == first
    assert allocator.release("alice/") is None
    assert allocator.allocations() == {}


def test_no_gpus_means_no_slots(tmp_path):
    allocator = SlotAllocator([], 4, tmp_path / "slots.json")
    assert allocator.capacity == 0
    assert allocator.allocate("alice/") is None


def test_allocator_rejects_bad_setup(tmp_path):
    with pytest.raises(ValueError, match="slots_per_gpu must be at least 1"):
        SlotAllocator(gpus(1), 0, tmp_path / "slots.json")
    with pytest.raises(ValueError, match="listed twice"):
        SlotAllocator([GPUDevice(0), GPUDevice(0)], 1, tmp_path / "slots.json")


def test_state_survives_a_new_allocator_and_reconcile_drops_dead_owners(tmp_path):
    state = tmp_path / "state" / "slots.json"  # missing folders are created
    before = SlotAllocator(gpus(2), 2, state)
    held = {owner: before.allocate(owner) for owner in ("alice/", "bob/", "carol/lab")}

    after = SlotAllocator(gpus(2), 2, state)  # a restarted hub
    assert after.allocations() == held
    new = after.allocate("dave/")
    assert new.key not in {slot.key for slot in held.values()}

    assert after.reconcile(["alice/", "dave/"]) == ["bob/", "carol/lab"]
    assert set(SlotAllocator(gpus(2), 2, state).allocations()) == {"alice/", "dave/"}
    # written atomically: only the table and its lock file, no temp files left behind
    assert sorted(p.name for p in state.parent.iterdir()) == ["slots.json", "slots.json.lock"]
    assert json.loads(state.read_text())["version"] == 1


def test_adopt_restores_a_slot_unless_someone_else_holds_it(tmp_path):
    allocator = SlotAllocator(gpus(1), 2, tmp_path / "slots.json")
    slot = Slot(gpus(1)[0], 1, 2)
    assert allocator.adopt("alice/", slot)
    assert allocator.adopt("alice/", slot)  # idempotent
    assert not allocator.adopt("bob/", slot)
    assert allocator.allocations() == {"alice/": slot}
    assert allocator.allocate("bob/").share == 0


def test_corrupt_state_file_is_set_aside(tmp_path, caplog):
    state = tmp_path / "slots.json"
    state.write_text("{not json")
    allocator = SlotAllocator(gpus(1), 1, state)
    assert allocator.allocate("alice/") is not None
    assert len(list(tmp_path.glob("slots.json.corrupt-*"))) == 1
    assert "unreadable" in caplog.text


@pytest.mark.asyncio
async def test_64_concurrent_tasks_in_threads_never_share_a_slot(tmp_path):
    state = tmp_path / "slots.json"
    shared = SlotAllocator(gpus(3), 4, state)  # 12 slots for 64 requests

    def allocate(i: int) -> Slot | None:
        # half the tasks share one allocator, the other half each open their own on the same file
        allocator = shared if i % 2 else SlotAllocator(gpus(3), 4, state)
        return allocator.allocate(f"user{i}/")

    results = await asyncio.gather(*(asyncio.to_thread(allocate, i) for i in range(64)))
    granted = {f"user{i}/": slot for i, slot in enumerate(results) if slot is not None}
    assert len(granted) == shared.capacity == 12
    assert len({slot.key for slot in granted.values()}) == 12
    assert shared.allocations() == granted


def _race_worker(state_file: str, start, index: int, results) -> None:
    """One of several processes that allocate at the same moment (must be importable: spawn context)."""
    allocator = SlotAllocator(gpus(2), 5, state_file)
    start.wait()  # a barrier: all processes begin together, after their (slow) start-up
    granted = []
    for j in range(16):
        owner = f"proc{index}-{j}/"
        slot = allocator.allocate(owner)
        if slot is not None:
            granted.append((owner, slot.key))
    results.put(granted)


def test_4_processes_x_16_allocations_never_share_a_slot(tmp_path):
    state = tmp_path / "slots.json"
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(4 + 1), ctx.Queue()
    workers = [ctx.Process(target=_race_worker, args=(str(state), start, i, results)) for i in range(4)]
    for worker in workers:
        worker.start()
    start.wait(timeout=120)
    granted = [item for _ in workers for item in results.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    capacity = 2 * 5
    assert len(granted) == capacity  # 64 requests, 10 slots
    assert len({key for _, key in granted}) == capacity  # no slot handed out twice
    table = SlotAllocator(gpus(2), 5, state).allocations()
    assert {owner: slot.key for owner, slot in table.items()} == dict(granted)


# --- home seeding ----------------------------------------------------------------------------------------------


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    (root / "datanets").mkdir(parents=True)
    (root / ".ipynb_checkpoints").mkdir()
    (root / "welcome.ipynb").write_text('{"cells": [], "template": "welcome"}')
    (root / "datanets" / "contribute.ipynb").write_text('{"cells": [], "template": "contribute"}')
    (root / ".ipynb_checkpoints" / "welcome-checkpoint.ipynb").write_text("{}")
    return root


def test_seed_home_copies_once_and_never_overwrites(tmp_path, templates):
    home = tmp_path / "homes" / "alice"  # missing: created
    copied = seed_home(templates, home)
    assert sorted(p.relative_to(home).as_posix() for p in copied) == ["datanets/contribute.ipynb", "welcome.ipynb"]
    assert not (home / ".ipynb_checkpoints").exists()
    assert (home / "datanets" / "contribute.ipynb").read_text() == '{"cells": [], "template": "contribute"}'

    (home / "welcome.ipynb").write_text("my edits")
    (home / "datanets" / "contribute.ipynb").unlink()  # deleted on purpose: must not come back
    assert seed_home(templates, home) == []
    assert (home / "welcome.ipynb").read_text() == "my edits"
    assert not (home / "datanets" / "contribute.ipynb").exists()

    (templates / "new.ipynb").write_text("{}")  # a template added later still arrives
    assert seed_home(templates, home) == [home / "new.ipynb"]


def test_seed_home_keeps_a_users_own_file_of_the_same_name(tmp_path, templates):
    home = tmp_path / "bob"
    (home / "datanets").mkdir(parents=True)
    (home / "datanets" / "contribute.ipynb").write_text("bob's own")
    assert seed_home(templates, home) == [home / "welcome.ipynb"]
    assert (home / "datanets" / "contribute.ipynb").read_text() == "bob's own"
    assert json.loads((home / MANIFEST).read_text())["seeded"] == ["datanets/contribute.ipynb", "welcome.ipynb"]


def test_seed_home_does_not_follow_symlinks_planted_in_the_home(tmp_path, templates):
    outside = tmp_path / "outside"
    outside.mkdir()
    home = tmp_path / "mallory"
    home.mkdir()
    (home / "datanets").symlink_to(outside)  # the hub may run as root: it must not write through this
    (home / "welcome.ipynb").symlink_to(outside / "planted.ipynb")
    assert seed_home(templates, home) == []
    assert list(outside.iterdir()) == []


def test_seed_home_with_missing_templates_copies_nothing(tmp_path):
    assert seed_home(tmp_path / "no-such-folder", tmp_path / "home") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_seed_home_gives_created_files_to_the_user(tmp_path, templates):
    home = tmp_path / "carol"
    seed_home(templates, home, owner=(4321, 4321))
    for path in (home, home / "datanets", home / "welcome.ipynb", home / "datanets" / "contribute.ipynb"):
        assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4321)
    assert home.stat().st_mode & 0o777 == 0o700


# --- the spawner mixin -----------------------------------------------------------------------------------------


class FakeHub:
    """A JupyterHub database (in memory) and config, to build spawners the way the hub does."""

    def __init__(self, tmp_path: Path, **traits) -> None:
        self.db = orm.new_session_factory("sqlite:///:memory:")()
        self.config = Config()
        self.config.GPUSlotMixin.gpus = "0,1"
        self.config.GPUSlotMixin.slots_per_gpu = 1
        self.config.GPUSlotMixin.state_file = str(tmp_path / "slots.json")
        self.config.SharedUserGPUSpawner.home_dir_template = str(tmp_path / "homes" / "{username}")
        for name, value in traits.items():
            setattr(self.config.GPUSlotMixin, name, value)
        self.users: dict[str, User] = {}

    def user(self, name: str, *servers: str) -> User:
        orm_user = orm.User(name=name)
        self.db.add(orm_user)
        for server in servers or ("",):
            self.db.add(orm.Spawner(name=server, user=orm_user))
        self.db.commit()
        settings = {"spawner_class": SharedUserGPUSpawner, "config": self.config, "hub": Hub()}
        self.users[name] = User(orm_user, settings)
        return self.users[name]

    def spawner(self, name: str, server: str = "") -> SharedUserGPUSpawner:
        user = self.users.get(name) or self.user(name, server)
        return user.spawners[server]  # built like JupyterHub does: constructor, then load_state


@contextlib.contextmanager
def capture_log(logger: logging.Logger) -> Iterator[list[str]]:
    """Messages logged on `logger` (the hub's log setup may stop them from reaching caplog)."""
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def launches(monkeypatch):
    """Fake the base spawner's process handling (no single-user server here); record each launch."""
    calls: list[dict] = []

    async def fake_start(self):
        calls.append({"owner": self.slot_owner, "env": self.get_env()})
        return ("127.0.0.1", 40000 + len(calls))

    async def fake_stop(self, now=False):
        calls.append({"owner": self.slot_owner, "stopped": True})

    monkeypatch.setattr(LocalProcessSpawner, "start", fake_start)
    monkeypatch.setattr(LocalProcessSpawner, "stop", fake_stop)
    return calls


async def spawn(spawner) -> tuple[str, int]:
    spawner.clear_state()  # what User.spawn does before start()
    return await spawner.start()


@pytest.mark.asyncio
async def test_start_gives_a_slot_in_the_env_and_stop_releases_it(tmp_path, launches):
    hub = FakeHub(tmp_path, slots_per_gpu=2)
    spawner = hub.spawner("alice")
    assert await spawn(spawner) == ("127.0.0.1", 40001)
    env = launches[0]["env"]
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert env["OPENLEDGER_GPU_FRACTION"] == "0.5"
    assert env["OPENLEDGER_DEVICE"] == "cuda"
    assert env["HOME"] == str(tmp_path / "homes" / "alice")
    assert (tmp_path / "homes" / "alice").is_dir()  # created before the server starts
    assert spawner.get_state()["gpu_slot"] == {
        "device": {"index": 0, "uuid": None, "name": "", "memory_mib": 0, "mig_profile": None},
        "share": 0,
        "shares": 2,
    }
    assert set(spawner.allocator.allocations()) == {"alice/"}

    await spawner.stop()
    assert launches[-1] == {"owner": "alice/", "stopped": True}
    assert spawner.allocator.allocations() == {}
    assert spawner.slot is None
    assert "gpu_slot" not in spawner.get_state()


@pytest.mark.asyncio
async def test_named_servers_get_their_own_slots(tmp_path, launches):
    hub = FakeHub(tmp_path)
    user = hub.user("alice", "", "lab")
    await spawn(user.spawners[""])
    await spawn(user.spawners["lab"])
    assert [call["owner"] for call in launches] == ["alice/", "alice/lab"]
    assert [call["env"]["CUDA_VISIBLE_DEVICES"] for call in launches] == ["0", "1"]
    assert "OPENLEDGER_GPU_FRACTION" not in launches[0]["env"]  # whole GPUs


@pytest.mark.asyncio
async def test_require_gpu_refuses_with_a_clear_503(tmp_path, launches):
    hub = FakeHub(tmp_path, require_gpu=True)
    await spawn(hub.spawner("alice"))
    await spawn(hub.spawner("bob"))
    carol = hub.spawner("carol")
    with pytest.raises(HTTPError) as info:
        await spawn(carol)
    message = "No GPU slot is free (all 2 in use); try again later or ask an admin"
    assert info.value.status_code == 503
    assert info.value.log_message == message
    assert info.value.jupyterhub_message == message  # what JupyterHub shows the user
    assert len(launches) == 2  # carol's server was never launched
    assert set(carol.allocator.allocations()) == {"alice/", "bob/"}


@pytest.mark.asyncio
async def test_require_gpu_without_any_gpu(tmp_path, launches):
    hub = FakeHub(tmp_path, gpus="none", require_gpu=True)
    with pytest.raises(HTTPError, match="no GPU to give out") as info:
        await spawn(hub.spawner("alice"))
    assert info.value.status_code == 503


@pytest.mark.asyncio
async def test_without_a_free_slot_the_server_falls_back_to_cpu(tmp_path, launches):
    hub = FakeHub(tmp_path, gpus="0")
    await spawn(hub.spawner("alice"))
    bob = hub.spawner("bob")
    with capture_log(bob.log) as records:
        await spawn(bob)
    assert launches[1]["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert launches[1]["env"]["OPENLEDGER_DEVICE"] == "cpu"
    assert "OPENLEDGER_GPU_FRACTION" not in launches[1]["env"]
    assert CPU_ENV.items() <= launches[1]["env"].items()
    assert "no GPU slot free for bob/ (1 in total): starting it on CPU" in records
    assert bob.slot is None
    assert "gpu_slot" not in bob.get_state()


@pytest.mark.asyncio
async def test_a_failed_launch_releases_the_slot(tmp_path, launches, monkeypatch):
    async def broken_start(self):
        raise RuntimeError("jupyterhub-singleuser not found")

    monkeypatch.setattr(LocalProcessSpawner, "start", broken_start)
    spawner = FakeHub(tmp_path).spawner("alice")
    with pytest.raises(RuntimeError):
        await spawn(spawner)
    assert spawner.allocator.allocations() == {}


@pytest.mark.asyncio
async def test_clear_state_releases(tmp_path, launches):
    spawner = FakeHub(tmp_path).spawner("alice")
    await spawn(spawner)
    spawner.clear_state()  # LocalProcessSpawner.poll() does this when it finds the process gone
    assert spawner.allocator.allocations() == {}
    assert spawner.get_state() == {}


@pytest.mark.asyncio
async def test_templates_are_copied_once_and_user_edits_survive(tmp_path, launches, templates):
    hub = FakeHub(tmp_path, templates_dir=str(templates))
    spawner = hub.spawner("alice")
    home = tmp_path / "homes" / "alice"
    await spawn(spawner)
    assert (home / "welcome.ipynb").read_text() == '{"cells": [], "template": "welcome"}'
    assert (home / "datanets" / "contribute.ipynb").exists()
    (home / "welcome.ipynb").write_text("alice's notes")
    await spawner.stop()
    await spawn(spawner)
    assert (home / "welcome.ipynb").read_text() == "alice's notes"


@pytest.mark.asyncio
async def test_hub_restart_keeps_live_servers_and_releases_dead_ones(tmp_path, launches):
    hub = FakeHub(tmp_path, gpus="0,1", slots_per_gpu=2)
    state_file = hub.config.GPUSlotMixin.state_file
    # The previous hub process left this table behind.
    previous = SlotAllocator(parse_gpu_spec("0,1"), 2, state_file)
    slots = {owner: previous.allocate(owner) for owner in ("alice/", "bob/", "carol/", "dave/")}
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        # alice's server is alive, bob's died while the hub was down, carol's was being stopped when the hub
        # crashed (no server, stale state), dave was deleted.
        for name, pid, running in (("alice", live.pid, True), ("bob", dead.pid, True), ("carol", 0, False)):
            user = hub.user(name)
            orm_spawner = user.orm_spawners[""]
            orm_spawner.state = {"pid": pid, "gpu_slot": slots[f"{name}/"].to_dict()}
            if running:
                orm_spawner.server = orm.Server()
        hub.db.commit()

        # What JupyterHub.init_spawners does for each server the database calls running:
        for name in ("alice", "bob"):
            user = hub.users[name]
            spawner = user.spawners[""]
            if await spawner.poll() is not None:
                await user.stop("")
        alice, bob = hub.users["alice"].spawners[""], hub.users["bob"].spawners[""]
        assert alice.slot == slots["alice/"]
        assert bob.slot is None
        assert alice.allocator.allocations() == {"alice/": slots["alice/"]}
        assert "gpu_slot" not in hub.users["bob"].orm_spawners[""].state

        carol = hub.users["carol"].spawners[""]  # loaded later, e.g. when carol logs in
        assert carol.slot is None
        assert set(carol.allocator.allocations()) == {"alice/"}
    finally:
        live.kill()
        live.wait()


def test_state_round_trip_restores_the_slot_in_a_new_hub_process(tmp_path):
    hub = FakeHub(tmp_path)
    allocator = SlotAllocator(parse_gpu_spec("0,1"), 1, hub.config.GPUSlotMixin.state_file)
    slot = allocator.allocate("alice/")
    allocator.release("alice/")  # even if the table lost it, the server's own state brings it back
    spawner = SharedUserGPUSpawner(config=hub.config, user=type("U", (), {"name": "alice"})())
    spawner.load_state({"gpu_slot": slot.to_dict(), "pid": 123})
    assert spawner.slot == slot
    assert spawner.pid == 123
    assert spawner.allocator.allocations() == {"alice/": slot}


def test_bad_gpus_setting_fails_at_config_load(tmp_path):
    with pytest.raises(ValueError, match="'x' is not a GPU index"):
        SharedUserGPUSpawner(gpus="0,x")


def test_gpu_spawner_needs_the_account_made_at_start(tmp_path):
    spawner = GPUSpawner(user=type("U", (), {"name": "alice"})())
    with pytest.raises(HTTPError, match="no OS account for 'alice' yet"):
        spawner.home_owner()


# --- KubeSpawner profiles --------------------------------------------------------------------------------------


def test_build_profile_list():
    profiles = build_profile_list(
        [GPUOffer("NVIDIA-H100-80GB-HBM3"), GPUOffer("NVIDIA-H100-80GB-HBM3", count=2), MIGOffer("1g.10gb")]
    )
    assert [p["slug"] for p in profiles] == [
        "cpu",
        "gpu-nvidia-h100-80gb-hbm3",
        "gpu-nvidia-h100-80gb-hbm3-x2",
        "mig-1g-10gb",
    ]
    assert [p["default"] for p in profiles] == [True, False, False, False]

    cpu = profiles[0]["kubespawner_override"]
    assert cpu["extra_resource_limits"] == {"nvidia.com/gpu": "0"}
    assert cpu["extra_resource_guarantees"] == {"nvidia.com/gpu": "0"}
    assert cpu["environment"] == {
        "OPENLEDGER_DEVICE": "cpu",
        "CUDA_VISIBLE_DEVICES": "",
        "NVIDIA_VISIBLE_DEVICES": "void",
    }
    assert "node_selector" not in cpu and "tolerations" not in cpu

    two = profiles[2]["kubespawner_override"]
    assert two["extra_resource_limits"] == two["extra_resource_guarantees"] == {"nvidia.com/gpu": "2"}
    assert two["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert two["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert two["environment"] == {"OPENLEDGER_DEVICE": "cuda"}
    assert profiles[2]["display_name"] == "2 x NVIDIA-H100-80GB-HBM3 GPUs"

    mig = profiles[3]["kubespawner_override"]
    assert mig["extra_resource_limits"] == {"nvidia.com/mig-1g.10gb": "1", "nvidia.com/gpu": "0"}
    assert mig["extra_resource_guarantees"] == mig["extra_resource_limits"]
    assert "node_selector" not in mig
    json.dumps(profiles)  # plain data, ready for config files


def test_build_profile_list_default_choice():
    profiles = build_profile_list([GPUOffer("NVIDIA-L4", default=True), MIGOffer("3g.40gb", product="NVIDIA-H100")])
    assert [p["slug"] for p in profiles if p["default"]] == ["gpu-nvidia-l4"]
    assert profiles[2]["kubespawner_override"]["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-H100"}
    only_gpus = build_profile_list([GPUOffer("NVIDIA-L4"), GPUOffer("NVIDIA-A10G")], cpu=None)
    assert [p["default"] for p in only_gpus] == [True, False]
    custom_cpu = build_profile_list([], cpu=CPUOffer(display_name="Laptop-sized"))
    assert [(p["display_name"], p["default"]) for p in custom_cpu] == [("Laptop-sized", True)]
    untolerated = build_profile_list([GPUOffer("NVIDIA-L4")], gpu_tolerations=())
    assert "tolerations" not in untolerated[1]["kubespawner_override"]


@pytest.mark.parametrize(
    ("offers", "kwargs", "message"),
    [
        ([GPUOffer("NVIDIA-L4", count=0)], {}, "count must be a whole number of at least 1, not 0"),
        ([GPUOffer("NVIDIA-L4", count=True)], {}, "count must be a whole number"),
        ([MIGOffer("1g.10gb", count=-1)], {}, "count must be a whole number"),
        ([GPUOffer("NVIDIA H100 80GB")], {}, "is not a node label value"),
        ([GPUOffer("")], {}, "is not a node label value"),
        ([MIGOffer("1g10gb")], {}, "a MIG profile looks like 1g.10gb"),
        ([MIGOffer("1g.10gb+me")], {}, "a MIG profile looks like"),
        ([MIGOffer("0g.10gb")], {}, "a MIG profile looks like"),
        ([MIGOffer("1g.10gb", product="bad product")], {}, "is not a node label value"),
        ([GPUOffer("NVIDIA-L4"), GPUOffer("NVIDIA-L4")], {}, "listed twice: gpu-nvidia-l4"),
        ([GPUOffer("NVIDIA-L4", default=True)], {"cpu": CPUOffer(default=True)}, "only one profile can be the"),
        ([], {"cpu": None}, "nothing to offer"),
    ],
)
def test_build_profile_list_rejects_bad_offers(offers, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.").replace("+", r"\+")):
        build_profile_list(offers, **kwargs)


def test_build_profile_list_rejects_other_types():
    with pytest.raises(TypeError, match="expected GPUOffer or MIGOffer"):
        build_profile_list([{"product": "NVIDIA-L4"}])


# --- the dashboards server -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_dashboards_server_is_voila_only_on_cpu_in_the_curated_folder(tmp_path, launches, templates):
    dashboards = tmp_path / "dashboards"
    dashboards.mkdir()
    hub = FakeHub(tmp_path, gpus="0", templates_dir=str(templates), dashboards_dir=str(dashboards))
    user = hub.user("alice", "", "dashboards")
    server, lab = user.spawners["dashboards"], user.spawners[""]
    assert server.serves_dashboards and not lab.serves_dashboards
    home = tmp_path / "homes" / "alice"

    await spawn(server)
    env = launches[0]["env"]
    assert env["JUPYTERHUB_ROOT_DIR"] == str(dashboards)
    assert env["JUPYTERHUB_DEFAULT_URL"] == "/voila/render/contributor.ipynb"
    assert CPU_ENV.items() <= env.items()
    assert server.slot is None and server.allocator.allocations() == {}  # the only GPU stays free
    assert home.is_dir() and not (home / "welcome.ipynb").exists()  # a home, but no templates
    args = server.get_args()
    for arg in ("--ServerApp.jpserver_extensions=jupyterlab=False", "--VoilaConfiguration.show_tracebacks=False"):
        assert arg in args

    await spawn(lab)  # the user's own server is unchanged: the GPU, the templates, JupyterLab
    assert launches[1]["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert "JUPYTERHUB_ROOT_DIR" not in launches[1]["env"]
    assert lab.get_args() == [] and (home / "welcome.ipynb").exists()
    await server.stop()
    assert set(server.allocator.allocations()) == {"alice/"}


@pytest.mark.asyncio
async def test_a_missing_dashboards_folder_refuses_the_spawn_clearly(tmp_path, launches):
    spawner = FakeHub(tmp_path, dashboards_dir=str(tmp_path / "missing")).spawner("alice", "dashboards")
    with pytest.raises(HTTPError) as info:
        await spawn(spawner)
    assert info.value.status_code == 500
    message = f"The dashboards folder {tmp_path / 'missing'} is missing on the hub; ask an admin"
    assert info.value.jupyterhub_message == message
    assert launches == []


def test_without_a_dashboards_folder_the_name_is_an_ordinary_server(tmp_path):
    assert not FakeHub(tmp_path).spawner("alice", "dashboards").serves_dashboards
