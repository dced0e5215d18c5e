"""The base models this platform accepts adapters for: the SDK catalog's names, and every converted model folder in
`<data_dir>/models/<name>/` (where the launcher converts the catalog model and where OpenLoRA loads it from).

A manifest names its base by catalog name or by the local path it was trained from, and records the sha256 of the
base weights. The weights hash decides when the platform has those weights; a name alone is accepted only for a
catalog model the platform has not converted (nothing to compare with).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from hub.models.errors import ModelError
from openledger_sdk.catalog import CATALOG

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class BaseModel:
    name: str
    weights_sha256: str | None  # None: a catalog model not converted on this platform


def ref_name(ref: str) -> str:
    """The last path component of a base model reference ("…/models/smollm2-135m-instruct" → its name)."""
    return PureWindowsPath(PurePosixPath(ref).name).name


class BaseCatalog:
    def __init__(self, models_dir: Path, catalog_names: set[str] | None = None) -> None:
        self.models_dir = models_dir
        self.catalog_names = set(CATALOG) if catalog_names is None else catalog_names
        self._hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) → sha256: hash each file once
        self._lock = threading.Lock()

    def _weights_hash(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key not in self._hashes:
                digest = hashlib.sha256()
                with path.open("rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                self._hashes[key] = digest.hexdigest()
            return self._hashes[key]

    def _folders(self) -> list[tuple[str, Path]]:
        if not self.models_dir.is_dir():
            return []
        return [
            (folder.name, folder / WEIGHTS_FILE)
            for folder in sorted(self.models_dir.iterdir())
            if not folder.name.startswith(".") and (folder / WEIGHTS_FILE).is_file()
        ]

    def local(self) -> list[BaseModel]:
        """The converted models on this platform, with their weights hashes (each file hashed once). A model this
        service cannot read (copied in with private permissions) is left out and logged, not an error for all."""
        found = []
        for name, weights in self._folders():
            try:
                found.append(BaseModel(name, self._weights_hash(weights)))
            except OSError as err:
                log.warning("base model %s is not readable by the platform (%s): make it world-readable", name, err)
        return found

    def names(self) -> set[str]:
        """Every base model name: model names must not shadow them (OpenLoRA serves both under one namespace)."""
        return self.catalog_names | {name for name, _ in self._folders()}

    def match(self, ref: str, weights_sha256: str) -> BaseModel:
        """The platform's base model for a manifest's (reference, weights hash); 422 saying why when there is none."""
        local = self.local()
        for base in local:
            if base.weights_sha256 == weights_sha256:
                return base
        name = ref if ref in self.names() else ref_name(ref)
        known = next((base for base in local if base.name == name), None)
        if known is not None:
            raise ModelError(
                422,
                f"the adapter was trained on different weights than this platform's {name!r} (base weights sha256 "
                f"{weights_sha256[:12]}… vs {known.weights_sha256[:12]}…): fine-tune on the platform's base model",
            )
        if name in self.catalog_names:
            return BaseModel(name, None)
        offered = ", ".join(sorted(self.names())) or "none"
        raise ModelError(422, f"base model {ref!r} is not offered by this platform (base models: {offered})")
