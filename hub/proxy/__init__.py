"""How the hub runs configurable-http-proxy: tied to the hub's life, and closing a client's stream at once when the
service behind it dies (failfast.cjs)."""

from __future__ import annotations

import sys
from pathlib import Path

from hub.paths import node_bin, require_program

FAILFAST = Path(__file__).resolve().parent / "failfast.cjs"


def with_parent(command: list[str]) -> list[str]:
    """`command`, run so that it gets SIGTERM when its parent (the hub) dies, SIGKILL included."""
    return [sys.executable, "-m", "hub.lifecycle", *command]


def proxy_command() -> list[str]:
    node = require_program("node", "install Node.js 20+ (Debian: apt-get install -y nodejs)")
    return with_parent([node, "--require", str(FAILFAST), str(node_bin("configurable-http-proxy"))])
