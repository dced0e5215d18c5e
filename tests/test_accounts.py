"""One OS account per hub user: name mapping, creation, refusal of accounts that are not ours, and a home that a
new user of an old name does not inherit. Real `useradd` when the tests run as root (as CI does)."""

from __future__ import annotations

import os
import pwd
import stat
import uuid
from pathlib import Path

import pytest

from gpu_spawner.accounts import AccountError, ensure_account, remove_accounts, system_name
from gpu_spawner.limits import create_limits, oom_kills, parse_size

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creating OS accounts needs root (CI runs as root)")


def test_names_map_to_valid_short_account_names() -> None:
    assert system_name("ol-", "alice") == "ol-alice"
    assert system_name("ol-", "Alice") == "ol-alice"
    long_name = "a" * 32
    mapped = system_name("ol-", long_name)
    assert len(mapped) == 32 and mapped.startswith("ol-aaaa") and mapped != system_name("ol-", "a" * 31 + "b")
    with pytest.raises(AccountError, match="does not map to a valid OS account name"):
        system_name("", "9lives")  # an account name may not start with a digit
    with pytest.raises(AccountError, match="does not map to a valid OS account name"):
        system_name("ol-", "bad name")


def test_sizes_parse_or_say_what_is_wrong() -> None:
    assert parse_size("4G") == 4 << 30 and parse_size("512M") == 512 << 20 and parse_size("1.5GiB") == 3 << 29
    assert parse_size("0") == 0
    with pytest.raises(ValueError, match="is not a size"):
        parse_size("lots")


@pytest.fixture
def instance() -> str:
    instance = uuid.uuid4().hex[:8]
    yield instance
    remove_accounts(instance)


@needs_root
def test_an_account_is_created_once_and_never_taken_over(tmp_path: Path, instance: str) -> None:
    home_root, archive = tmp_path / "homes", tmp_path / "archive"
    name = f"t{instance[:5]}-alice"
    account = ensure_account(name, instance=instance, hub_user_id=7, home_root=home_root, archive_root=archive)
    entry = pwd.getpwnam(name)
    assert (account.uid, account.home) == (entry.pw_uid, str(home_root / name)) and account.uid != 0
    assert os.getgrouplist(name, entry.pw_gid) == [entry.pw_gid]  # no supplementary groups
    again = ensure_account(name, instance=instance, hub_user_id=7, home_root=home_root, archive_root=archive)
    assert again == account
    # Another hub (another instance id) must not take this account over, and nobody may take a system account.
    with pytest.raises(AccountError, match="already exists and was not created by this hub"):
        ensure_account(name, instance="otherhub", hub_user_id=7, home_root=home_root, archive_root=archive)
    with pytest.raises(AccountError, match="'nobody' already exists and was not created by this hub"):
        ensure_account("nobody", instance=instance, hub_user_id=1, home_root=home_root, archive_root=archive)


@needs_root
def test_a_new_user_of_an_old_name_starts_with_an_empty_home(tmp_path: Path, instance: str) -> None:
    home_root, archive = tmp_path / "homes", tmp_path / "archive"
    name = f"t{instance[:5]}-bob"
    account = ensure_account(name, instance=instance, hub_user_id=3, home_root=home_root, archive_root=archive)
    Path(account.home).mkdir(parents=True)
    (Path(account.home) / "private.txt").write_text("the old bob's work")
    # The hub user was deleted and a new one of the same name (a new hub id) arrives.
    ensure_account(name, instance=instance, hub_user_id=9, home_root=home_root, archive_root=archive)
    assert not Path(account.home).exists()
    (archived,) = archive.iterdir()
    assert (archived / "private.txt").read_text() == "the old bob's work"
    assert stat.S_IMODE(archive.stat().st_mode) == 0o700


def test_limits_fall_back_to_rlimits_without_cgroups(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("gpu_spawner.limits.CGROUP_ROOT", tmp_path / "no-cgroups")
    limits = create_limits("t-x", 1 << 30, 64)
    assert limits.memory_cgroup is None and limits.groups == ()
    assert limits.env() == {"OPENLEDGER_MEM_LIMIT": str(1 << 30)}
    assert oom_kills(tmp_path) == 0


@pytest.mark.asyncio
async def test_single_user_mode_refuses_a_second_user_with_one_line() -> None:
    from tornado.web import HTTPError

    from gpu_spawner.spawner import SharedUserGPUSpawner

    spawner = SharedUserGPUSpawner(user=type("U", (), {"name": "mallory"})(), allowed_users=["demo", "admin"])
    with pytest.raises(HTTPError) as refused:
        await spawner.start()
    assert refused.value.status_code == 403
    assert "single-user developer mode" in refused.value.jupyterhub_message
    assert "start it as root" in refused.value.jupyterhub_message
