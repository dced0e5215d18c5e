"""Seed a user's home with the template notebooks, without ever touching what the user already has.

The hub may run as root and write into homes owned by users, so every path below the home is walked with
directory file descriptors and O_NOFOLLOW: a symlink planted in a home cannot redirect a write elsewhere.
A small manifest in the home records which templates were offered, so a notebook the user deleted or
renamed does not come back at the next spawn, while templates added later still arrive.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST = ".openledger-templates.json"
SKIP_DIRS = {".ipynb_checkpoints", "__pycache__", ".git"}

Owner = tuple[int, int]  # (uid, gid) to give created files to, when the hub writes as root


def _chown(fd: int, owner: Owner | None) -> None:
    if owner is not None and owner != (os.geteuid(), os.getegid()):
        os.fchown(fd, *owner)


def ensure_home(home_dir: str | os.PathLike[str], owner: Owner | None = None, mode: int = 0o755) -> Path:
    """Create the home directory (and its parents) if missing; a created home is given to `owner`."""
    home = Path(home_dir)
    if not home.is_dir():
        home.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            home.mkdir(mode)
            fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
            try:
                _chown(fd, owner)
                os.fchmod(fd, mode)  # mkdir's mode is filtered by the umask
            finally:
                os.close(fd)
    return home


def _open_subdir(parent_fd: int, name: str, owner: Owner | None) -> int:
    """Open (creating if needed) directory `name` under `parent_fd`, refusing to follow a symlink."""
    try:
        os.mkdir(name, 0o755, dir_fd=parent_fd)
        created = True
    except FileExistsError:
        created = False
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
    if created:
        _chown(fd, owner)
    return fd


def _copy_new(source: Path, dir_fd: int, name: str, owner: Owner | None) -> bool:
    """Copy `source` to a new file `name` in `dir_fd`; False if anything (file, dir, symlink) is already there."""
    mode = 0o755 if os.access(source, os.X_OK) else 0o644
    try:
        # O_EXCL never overwrites and, with O_NOFOLLOW, never writes through a symlink.
        out_fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
    except FileExistsError:
        return False
    try:
        _chown(out_fd, owner)
        with source.open("rb") as src, os.fdopen(out_fd, "wb", closefd=False) as dst:
            shutil.copyfileobj(src, dst)
    except BaseException:
        os.close(out_fd)
        os.unlink(name, dir_fd=dir_fd)  # no half-written notebook left behind
        raise
    os.close(out_fd)
    return True


def _read_manifest(home_fd: int) -> set[str]:
    try:
        fd = os.open(MANIFEST, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=home_fd)
    except OSError:
        return set()
    try:
        with os.fdopen(fd, encoding="utf-8") as handle:
            data = json.load(handle)
        return {str(item) for item in data.get("seeded", [])}
    except (ValueError, AttributeError, TypeError):
        return set()  # a damaged manifest only means existing files are re-checked (and still not overwritten)


def _write_manifest(home_fd: int, seeded: set[str], owner: Owner | None) -> None:
    tmp = f"{MANIFEST}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=home_fd)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=home_fd)
    _chown(fd, owner)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"seeded": sorted(seeded)}, handle, indent=1)
    # rename replaces a symlink named like the manifest instead of following it
    os.replace(tmp, MANIFEST, src_dir_fd=home_fd, dst_dir_fd=home_fd)


def _template_files(templates: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(templates):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        files.extend(Path(root, name).relative_to(templates) for name in sorted(names))
    return files


def seed_home(
    templates_dir: str | os.PathLike[str], home_dir: str | os.PathLike[str], owner: Owner | None = None
) -> list[Path]:
    """Copy the templates the user has never been offered into `home_dir`; returns the files copied.

    Existing files are never overwritten, missing subfolders are created, and everything created is given
    to `owner` (uid, gid) when set. A missing templates folder is logged and seeds nothing.
    """
    templates = Path(templates_dir)
    if not templates.is_dir():
        log.warning("template folder %s does not exist: no notebooks copied into %s", templates, home_dir)
        return []
    home = ensure_home(home_dir, owner, 0o700 if owner is not None else 0o755)
    home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    copied: list[Path] = []
    try:
        seeded = _read_manifest(home_fd)
        offered = set(seeded)
        for rel in _template_files(templates):
            key = rel.as_posix()
            if key in seeded:
                continue  # offered before: the user may have deleted or renamed it on purpose
            dir_fd = home_fd
            try:
                for part in rel.parts[:-1]:
                    next_fd = _open_subdir(dir_fd, part, owner)
                    if dir_fd != home_fd:
                        os.close(dir_fd)
                    dir_fd = next_fd
                if _copy_new(templates / rel, dir_fd, rel.name, owner):
                    copied.append(home / rel)
            except OSError as err:
                # e.g. a file or symlink where a template folder should be: leave the user's things alone
                log.warning("not copying template %s into %s: %s", key, home, err)
                continue
            finally:
                if dir_fd != home_fd:
                    os.close(dir_fd)
            offered.add(key)
        if offered != seeded:
            _write_manifest(home_fd, offered, owner)
    finally:
        os.close(home_fd)
    return copied
