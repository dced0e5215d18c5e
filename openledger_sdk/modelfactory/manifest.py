"""The provenance manifest (`manifest.json`) saved beside every adapter.

It records what went in (base model id + weights sha256, datanet name/version/Merkle root, the rows' hash, the
config and its hash, the seed, the data order hash), what came out (per-epoch losses, eval before/after, the sha256
of every saved file: adapter weights, adapter config, attribution and span indexes), the library versions, whether
training ran to the end (`complete`), and finally `manifest_hash`: sha256 of the manifest's canonical JSON without
that field. The manifest hash is what gets registered on-chain; it commits to every file through `files`.

No torch here: `publish()` checks manifests with these functions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from openledger_sdk.modelfactory.config import canonical_hash

MANIFEST_FILE = "manifest.json"
FORMAT = "openledger-modelfactory-manifest/1"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_hash(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the manifest without its own `manifest_hash` field."""
    return canonical_hash({key: value for key, value in manifest.items() if key != "manifest_hash"})


def library_versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("torch", "transformers", "peft", "accelerate", "openledger-notebooks"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "missing"
    return versions


def write_manifest(directory: str | Path, manifest: dict[str, Any], files: list[str]) -> dict[str, Any]:
    """Hash `files` (names inside `directory`), seal the manifest with its hash and write it; returns it."""
    directory = Path(directory)
    sealed = {key: value for key, value in manifest.items() if key != "manifest_hash"}
    sealed["format"] = FORMAT
    sealed["files"] = {name: file_sha256(directory / name) for name in sorted(files)}
    sealed["adapter_sha256"] = sealed["files"].get(ADAPTER_WEIGHTS)
    sealed["manifest_hash"] = manifest_hash(sealed)
    text = json.dumps(sealed, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    (directory / MANIFEST_FILE).write_text(text + "\n", encoding="utf-8")
    return sealed


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST_FILE} in {directory}: not a ModelFactory model folder")
    return json.loads(path.read_text(encoding="utf-8"))


def manifest_problems(directory: str | Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """Everything that does not match: the manifest's own hash, missing or changed files (empty = consistent)."""
    directory = Path(directory)
    manifest = manifest if manifest is not None else read_manifest(directory)
    problems = []
    if manifest.get("format") != FORMAT:
        problems.append(f"{MANIFEST_FILE} has format {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("manifest_hash") != manifest_hash(manifest):
        problems.append(f"{MANIFEST_FILE} was edited after it was sealed (manifest_hash does not match)")
    for name, expected in sorted(manifest.get("files", {}).items()):
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif file_sha256(path) != expected:
            problems.append(f"{name} does not match the sha256 in {MANIFEST_FILE}")
    for required in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        if required not in manifest.get("files", {}):
            problems.append(f"{MANIFEST_FILE} does not list {required}")
    return problems
