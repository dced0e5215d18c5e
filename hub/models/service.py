"""Published models: publish (checks, blobs, one SQL transaction with the registerModel outbox row), list, get,
files, price changes and unlisting.

Every method takes the acting hub user and opens its own SQL transaction; errors are `ModelError`s carrying the
HTTP status. Every model is public while listed; an unlisted one is seen only by its owner and admins.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from hub.blobs import BlobStore
from hub.datanets.canonical import hex_hash
from hub.models.bases import BaseCatalog
from hub.models.chain import ModelRegistryWriter
from hub.models.errors import ModelError
from hub.models.models import PublishedModel, utcnow
from hub.models.pricing import format_price, parse_price
from hub.models.validation import CheckedUpload, Upload, check_name, check_upload
from hub.relay.outbox import OutboxConflictError
from hub.rewards.training_publish import training_of_model, training_run_of
from openledger_sdk.ledger.records import derive_id
from openledger_sdk.modelfactory.manifest import MANIFEST_FILE

log = logging.getLogger("hub.models")
MEDIA_TYPES = {".json": "application/json", ".safetensors": "application/octet-stream"}


class Actor(Protocol):
    """The acting hub user (hub.auth.HubUser fits)."""

    name: str
    admin: bool
    kind: str


# (actor, datanet name, version) → that version's Merkle root on this platform, or ModelError saying why not.
DatanetRoots = Callable[[Actor, str, int], str]
# username → checksum address of their custodial wallet.
AddressBook = Callable[[str], str]


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    handle.seek(0)
    while block := handle.read(1 << 20):
        yield block


class ModelService:
    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        addresses: AddressBook,
        chain: ModelRegistryWriter | None,
        bases: BaseCatalog,
        datanet_roots: DatanetRoots,
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        self.addresses = addresses
        self.chain = chain
        self.bases = bases
        self.datanet_roots = datanet_roots
        self._price_lock = threading.Lock()  # price changes count `price_changes` read-modify-write

    # Access --------------------------------------------------------------------------------------------------------
    @staticmethod
    def check_publisher(actor: Actor) -> None:
        """Only hub users publish: the model is owned on-chain by their custodial wallet."""
        if actor.kind != "user":
            raise ModelError(403, f"models are published by hub users; {actor.name!r} is a {actor.kind}")

    @staticmethod
    def _find(session: Session, name_or_id: str) -> PublishedModel | None:
        model = session.exec(select(PublishedModel).where(PublishedModel.name == name_or_id)).first()
        # ASCII digits only ("³".isdigit() is True), and within SQL's 64-bit integers.
        if model is None and name_or_id.isascii() and name_or_id.isdigit() and len(name_or_id) <= 18:
            model = session.get(PublishedModel, int(name_or_id))
        return model

    def _visible(self, session: Session, actor: Actor, name_or_id: str) -> PublishedModel:
        model = self._find(session, name_or_id)
        if model is None or not (model.listed or actor.admin or actor.name == model.owner):
            raise ModelError(404, f"no model named {name_or_id[:80]!r}")
        return model

    # Publish -------------------------------------------------------------------------------------------------------
    def publish(
        self, actor: Actor, name: str, price: str, files: dict[str, Upload], declared_hash: str | None = None
    ) -> dict[str, Any]:
        """Check everything, store the files, then one transaction: the model row and its registerModel write."""
        self.check_publisher(actor)
        check_name(name, self.bases.names())
        price_wei = parse_price(price)
        with Session(self.engine) as session:
            if session.exec(select(PublishedModel.id).where(PublishedModel.name == name)).first() is not None:
                raise ModelError(409, f"a model named {name!r} exists already: pick another name")
        checked = check_upload(files, declared_hash)
        base = self.bases.match(checked.base_ref, checked.base_weights_sha256)
        for ref in checked.datanets:
            root = self.datanet_roots(actor, ref.name, ref.version)
            if root != ref.root:
                raise ModelError(
                    422,
                    f"datanet {ref.name!r} version {ref.version} on this platform has root {root}, the manifest says "
                    f"{ref.root}: the adapter was trained on other data",
                )
        with Session(self.engine) as session:
            training_run_of(session, checked.manifest, actor.name)  # refused before anything is stored
        owner_address = self.addresses(actor.name)
        stored = self._store(checked)
        model = PublishedModel(
            name=name,
            owner=actor.name,
            owner_address=owner_address,
            # A fresh id per model row: a recreated name (new database, same chain) must not collide on-chain.
            chain_id=hex_hash(derive_id("model", f"{name}:{uuid.uuid4()}")),
            base_model=base.name,
            base_model_ref=checked.base_ref[:1000],
            base_weights_sha256=checked.base_weights_sha256,
            manifest_hash=checked.manifest["manifest_hash"],
            adapter_sha256=checked.manifest["adapter_sha256"],
            price_wei=str(price_wei),
            datanets=[{"name": r.name, "version": r.version, "root": r.root} for r in checked.datanets],
            files=stored,
            lora_rank=checked.lora_rank,
        )
        with Session(self.engine) as session:
            session.add(model)
            try:
                paid_run = training_run_of(session, checked.manifest, actor.name)
                if paid_run is not None:
                    paid_run.model = name  # unique: a second model on the same run fails here
                session.flush()
                if self.chain is not None:
                    model.outbox_id = self.chain.register(session, model)
                session.commit()
            except IntegrityError:
                session.rollback()
                raise ModelError(409, f"a model named {name!r} exists already: pick another name") from None
            if self.chain is not None:
                self.chain.committed()
            log.info("model %s published by %s (base %s, %d files)", name, actor.name, base.name, len(stored))
            return self._describe(session, model, full=True)

    def _store(self, checked: CheckedUpload) -> dict[str, dict[str, Any]]:
        stored = {}
        for filename, upload in sorted(checked.files.items()):
            blob = self.blobs.put_stream(_chunks(upload.file))
            if blob.digest != upload.sha256:  # the spooled file changed under us: never record a wrong digest
                raise ModelError(500, f"{filename} changed while it was stored; send it again")
            stored[filename] = {"digest": blob.digest, "bytes": blob.size}
        return stored

    # Read ----------------------------------------------------------------------------------------------------------
    def search(
        self, actor: Actor, owner: str | None = None, base: str | None = None, mine: bool = False
    ) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            query = select(PublishedModel).where(col(PublishedModel.listed).is_(True))
            if mine:
                query = query.where(PublishedModel.owner == actor.name)
            if owner:
                query = query.where(PublishedModel.owner == owner)
            if base:
                query = query.where(PublishedModel.base_model == base)
            query = query.order_by(col(PublishedModel.created_at).desc(), col(PublishedModel.id).desc())
            return [self._describe(session, model) for model in session.exec(query).all()]

    def get(self, actor: Actor, name_or_id: str) -> dict[str, Any]:
        with Session(self.engine) as session:
            return self._describe(session, self._visible(session, actor, name_or_id), full=True)

    def file(self, actor: Actor, name: str, filename: str) -> tuple[str, str]:
        """(blob digest, media type) of one of the model's files."""
        with Session(self.engine) as session:
            model = self._visible(session, actor, name)
        entry = model.files.get(filename)
        if entry is None:
            raise ModelError(
                404, f"model {model.name!r} has no file {filename[:80]!r} (files: {', '.join(model.files)})"
            )
        return entry["digest"], MEDIA_TYPES.get(Path(filename).suffix, "application/octet-stream")

    def _describe(self, session: Session, model: PublishedModel, full: bool = False) -> dict[str, Any]:
        chain = {"model_id": model.chain_id, "outbox_id": model.outbox_id}
        chain |= self._status(session, model.outbox_id)
        if model.price_outbox_id is not None:
            chain["price_change"] = {"outbox_id": model.price_outbox_id} | self._status(session, model.price_outbox_id)
        info: dict[str, Any] = {
            "id": model.id,
            "name": model.name,
            "owner": model.owner,
            "owner_address": model.owner_address,
            "base_model": {
                "name": model.base_model,
                "ref": model.base_model_ref,
                "weights_sha256": model.base_weights_sha256,
            },
            "price_per_1k_tokens": format_price(int(model.price_wei)),
            "price_per_1k_tokens_wei": model.price_wei,
            "manifest_hash": model.manifest_hash,
            "adapter_sha256": model.adapter_sha256,
            "lora_rank": model.lora_rank,
            "datanets": model.datanets,
            "files": model.files,
            "listed": model.listed,
            "created_at": model.created_at.isoformat(),
            "updated_at": model.updated_at.isoformat(),
            "chain": chain,
            "training": training_of_model(session, model.name),
        }
        if full:
            info["manifest"] = json.loads(self.blobs.get(model.files[MANIFEST_FILE]["digest"]))
        return info

    def _status(self, session: Session, outbox_id: int | None) -> dict[str, Any]:
        return self.chain.status(session, outbox_id) if self.chain is not None else {"status": "off"}

    # Change --------------------------------------------------------------------------------------------------------
    def set_price(self, actor: Actor, name: str, price: str) -> dict[str, Any]:
        """The owner's new price: in SQL and, through the relay, on-chain (setPrice; or registerModel at that price
        when the registration itself is still waiting for the ledger)."""
        price_wei = parse_price(price)
        with self._price_lock, Session(self.engine) as session:
            model = self._visible(session, actor, name)
            if actor.name != model.owner:
                raise ModelError(403, f"only the owner of {model.name!r} ({model.owner}) may change its price")
            if int(model.price_wei) != price_wei:
                model.price_wei = str(price_wei)
                model.updated_at = utcnow()
                try:
                    if self.chain is not None:
                        self._enqueue_price(session, model)
                    session.add(model)
                    session.commit()
                except (IntegrityError, OutboxConflictError):
                    session.rollback()
                    raise ModelError(409, f"the price of {model.name!r} changed at the same time: try again") from None
                if self.chain is not None:
                    self.chain.committed()
            return self._describe(session, model)

    def _enqueue_price(self, session: Session, model: PublishedModel) -> None:
        assert self.chain is not None
        if model.outbox_id is None:
            # Not registered yet (no ledger at publish time): register at the new price, now or at the next sync.
            model.outbox_id = self.chain.register(session, model)
            return
        model.price_changes += 1
        outbox_id = self.chain.set_price(session, model)
        if outbox_id is None:
            raise ModelError(503, "the ledger is not up yet, so the on-chain price cannot change: try again shortly")
        model.price_outbox_id = outbox_id

    def unlist(self, actor: Actor, name: str) -> dict[str, Any]:
        """Hide the model from the catalog and from OpenLoRA; its on-chain record stays (it cannot be removed)."""
        with Session(self.engine) as session:
            model = self._visible(session, actor, name)
            if not (actor.admin or actor.name == model.owner):
                raise ModelError(403, f"only the owner of {model.name!r} ({model.owner}) or an admin may unlist it")
            if model.listed:
                model.listed = False
                model.updated_at = utcnow()
                session.add(model)
                session.commit()
            return self._describe(session, model)

    def sync_chain(self) -> int:
        """Enqueue registerModel for the models published while no ledger was up; returns how many."""
        if self.chain is None:
            return 0
        enqueued = 0
        with Session(self.engine) as session:
            waiting = session.exec(
                select(PublishedModel).where(col(PublishedModel.outbox_id).is_(None)).order_by(PublishedModel.id)
            ).all()
            for model in waiting:
                model.outbox_id = self.chain.register(session, model)
                if model.outbox_id is None:
                    return 0  # still no ledger
                session.add(model)
                enqueued += 1
            session.commit()
        self.chain.committed()
        return enqueued


def models_progress(session: Session, usernames: list[str]) -> dict[str, dict[str, int]]:
    """Workshop progress column: listed models per user."""
    if not usernames:
        return {}
    rows = session.exec(
        select(PublishedModel.owner, func.count())
        .where(col(PublishedModel.owner).in_(usernames), col(PublishedModel.listed).is_(True))
        .group_by(PublishedModel.owner)
    ).all()
    counts = dict(rows)
    return {name: {"models": int(counts.get(name, 0))} for name in usernames}
