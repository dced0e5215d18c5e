"""What the OpenLoRA service reads of the published models: adapter folders and prices.

OpenLoRA runs in its own process with the platform's settings (same database URL, same blob store), so everything
here works from the settings alone:

    catalog = ModelCatalog.from_settings(load_settings())
    engine = OpenLoRAEngine(..., resolve_adapter_path=catalog.resolver())   # model name → adapter folder or None
    prices = catalog.prices()                                                # model name → OPEN per 1k tokens

`resolve_adapter` materialises a model's files (adapter_model.safetensors, adapter_config.json, manifest.json and
the attribution and span indexes it was published with) from the blob store into `<data_dir>/adapters/<name>/`:
built in a temporary folder, checked against their digests, and renamed into place, so a reader (in this process
or another) never sees a half-written adapter. An owner's own attribution null threshold is not copied: the
server calibrates it (the threshold decides whether contributors are paid, so the payee's rival must not set it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.blobs import BlobStore
from hub.db import make_engine
from hub.models.models import PublishedModel
from hub.models.pricing import to_open
from hub.platform.runtime import PlatformRuntime
from hub.platform.transfers import shared_blob_store
from hub.settings import Settings
from openledger_sdk.modelfactory.attribution_query import NULL_FILE
from openledger_sdk.modelfactory.manifest import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MANIFEST_FILE

ADAPTER_FILES = (ADAPTER_WEIGHTS, ADAPTER_CONFIG, MANIFEST_FILE)
NOT_SERVED = {NULL_FILE}  # published files the server does not take from the owner
MARKER = ".openledger-adapter"  # holds the adapter's sha256: a folder with another one is stale


class UnknownModelError(KeyError):
    """No listed model by that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model"


class ModelCatalog:
    def __init__(self, engine: Engine, blobs: BlobStore, cache_dir: Path) -> None:
        self.engine = engine
        self.blobs = blobs
        self.cache_dir = cache_dir
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None = None) -> ModelCatalog:
        return cls(
            engine or make_engine(settings.database_url),
            BlobStore(settings.blobs_url),
            settings.data_dir / "adapters",
        )

    @classmethod
    def for_runtime(cls, runtime: PlatformRuntime) -> ModelCatalog:
        return cls(runtime.engine, shared_blob_store(runtime), runtime.settings.data_dir / "adapters")

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _listed(self, name: str) -> PublishedModel:
        with Session(self.engine) as session:
            model = session.exec(
                select(PublishedModel).where(PublishedModel.name == name, col(PublishedModel.listed).is_(True))
            ).first()
        if model is None:
            raise UnknownModelError(f"no listed model named {name[:80]!r}")
        return model

    def resolve(self, name: str) -> Path:
        """The folder holding the model's adapter files, materialised from the blob store on first use."""
        model = self._listed(name)
        target = self.cache_dir / model.name  # names are checked slugs: never a path trick
        with self._lock(model.name):
            if _marker(target) == model.adapter_sha256 and all((target / f).is_file() for f in served_files(model)):
                return target
            return self._materialise(model, target)

    def _materialise(self, model: PublishedModel, target: Path) -> Path:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = self.cache_dir / f".tmp-{model.name}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            for filename in served_files(model):
                self._copy_blob(model.files[filename]["digest"], staging / filename)
            (staging / MARKER).write_text(model.adapter_sha256)
            if target.exists():  # a stale copy (another adapter under this name, e.g. a recreated database)
                stale = self.cache_dir / f".stale-{model.name}-{uuid.uuid4().hex}"
                os.rename(target, stale)
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.rename(staging, target)  # atomic: the folder appears complete or not at all
            except OSError:
                if _marker(target) != model.adapter_sha256:  # another process won the race with the same files
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _copy_blob(self, digest: str, path: Path) -> None:
        hasher = hashlib.sha256()
        with path.open("wb") as out:
            for chunk in self.blobs.iter_chunks(digest):
                hasher.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if hasher.hexdigest() != digest:
            raise OSError(f"blob {digest} is corrupt in {self.blobs!r}: its content does not hash to its name")

    def resolver(self) -> Callable[[str], Path | None]:
        """`resolve` for OpenLoRA's engine: None (not an error) for a name that is not a listed model."""

        def resolve(name: str) -> Path | None:
            try:
                return self.resolve(name)
            except UnknownModelError:
                return None

        return resolve

    def prices(self, base: str | None = None) -> dict[str, Decimal]:
        return price_table(self.engine, base)


def served_files(model: PublishedModel) -> list[str]:
    """The adapter files first, then the indexes published with it (names checked at publish: plain file names)."""
    extra = sorted(name for name in model.files if name not in ADAPTER_FILES and name not in NOT_SERVED)
    return [*ADAPTER_FILES, *extra]


def _marker(folder: Path) -> str | None:
    try:
        return (folder / MARKER).read_text().strip()
    except OSError:
        return None


_catalogs: dict[tuple[str, str, str], ModelCatalog] = {}
_catalogs_guard = threading.Lock()


def _catalog_for(settings: Settings) -> ModelCatalog:
    """One catalog (one engine) per settings, for callers that pass settings at each call."""
    key = (settings.database_url, settings.blobs_url, str(settings.data_dir))
    with _catalogs_guard:
        if key not in _catalogs:
            _catalogs[key] = ModelCatalog.from_settings(settings)
        return _catalogs[key]


def resolve_adapter(source: PlatformRuntime | Settings | ModelCatalog, model_name: str) -> Path:
    """The local folder of a listed model's adapter (UnknownModelError otherwise); see the module docstring."""
    if isinstance(source, ModelCatalog):
        catalog = source
    elif isinstance(source, PlatformRuntime):
        catalog = source.extras.get("model_catalog") or source.extras.setdefault(
            "model_catalog", ModelCatalog.for_runtime(source)
        )
    else:
        catalog = _catalog_for(source)
    return catalog.resolve(model_name)


def price_table(engine: Engine, base: str | None = None) -> dict[str, Decimal]:
    """Listed model name → price per 1k tokens in OPEN (exact), optionally only the adapters of one base model."""
    with Session(engine) as session:
        query = select(PublishedModel.name, PublishedModel.price_wei).where(col(PublishedModel.listed).is_(True))
        if base is not None:
            query = query.where(PublishedModel.base_model == base)
        return {name: to_open(int(wei)) for name, wei in session.exec(query).all()}
