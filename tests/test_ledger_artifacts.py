"""The committed contract artifacts are what the sources compile to (solc-js from node_modules)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from eth_hash.auto import keccak

from hub.ledger.artifacts import ALL_NAMES, ARTIFACTS_DIR, decode_error, load_artifact, sources_hash

REPO = Path(__file__).resolve().parent.parent


def test_committed_artifacts_are_fresh(tmp_path: Path) -> None:
    done = subprocess.run(
        ["node", "hub/ledger/compile.mjs", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    fresh = sorted(path.name for path in tmp_path.glob("*.json"))
    assert fresh == sorted(f"{name}.json" for name in ALL_NAMES)
    for name in fresh:
        new, committed = json.loads((tmp_path / name).read_text()), json.loads((ARTIFACTS_DIR / name).read_text())
        hint = f"{name} is stale: run `node hub/ledger/compile.mjs` and commit hub/ledger/artifacts/"
        assert new["sourcesHash"] == committed["sourcesHash"], hint
        assert new["bytecode"] == committed["bytecode"], hint
        assert new == committed, hint


def test_artifacts_load_and_errors_decode() -> None:
    assert sources_hash().startswith("sha256:")
    for name in ALL_NAMES:
        artifact = load_artifact(name)
        assert artifact.bytecode.startswith("0x6") and artifact.abi  # PUSH1 or PUSH2 first
    data = keccak(b"EpochAlreadyCommitted(uint64)")[:4] + (7).to_bytes(32, "big")
    assert decode_error(data) == ("EpochAlreadyCommitted", {"epoch": 7})
    assert decode_error(b"\xde\xad\xbe\xef") is None
