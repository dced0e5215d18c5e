"""Where the tools the platform runs live: npm binaries in node_modules, the venv's Python."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from hub.settings import REPO_ROOT

NODE_MODULES = REPO_ROOT / "node_modules"


class MissingToolError(Exception):
    """A required executable is not installed; the message says how to install it."""


def node_bin(name: str) -> Path:
    """An executable installed by `npm install` (package.json), e.g. `configurable-http-proxy`."""
    candidates = [NODE_MODULES / ".bin" / name]
    if name == "anvil":
        # The anvil npm wrapper is a node script that re-resolves the platform binary on every call;
        # the binary itself starts faster and gets signals directly.
        candidates.insert(0, NODE_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil")
    for path in candidates:
        if path.exists():
            return path
    raise MissingToolError(f"{name} is not installed: run `npm ci` in {REPO_ROOT} (or `make install`)")


def require_program(name: str, hint: str) -> str:
    """A program on PATH (e.g. `node`), or a clear error with what to install."""
    found = shutil.which(name)
    if not found:
        raise MissingToolError(f"{name} not found on PATH: {hint}")
    return found


def venv_python() -> str:
    return sys.executable
