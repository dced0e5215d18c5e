"""Datanet business logic: who may do what, contributions in one transaction, curation, versions and proofs.

Every method takes the acting hub user and opens its own SQL transaction. Errors are `DatanetError`s carrying the
HTTP status the API answers with: a private datanet the caller may not see is 404 (its existence is not revealed),
an action on a visible one they may not take is 403.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from eth_hash.auto import keccak
from sqlalchemy import func, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from hub.blobs import BlobStore
from hub.datanets import config
from hub.datanets.canonical import canonical_json, hex_hash, row_text
from hub.datanets.dedup import MinHasher, NearDupIndex, normalise
from hub.datanets.ingest import Candidate, Problem, check_rows, near_duplicates
from hub.datanets.models import (
    Approval,
    Datanet,
    DatanetMember,
    DatanetRow,
    DatanetVersion,
    Role,
    Submission,
    SubmissionStatus,
    Visibility,
    utcnow,
)
from hub.datanets.parsing import FileRejected, ParsedRow, parse_file
from hub.datanets.schema import RowSchema
from hub.datanets.snapshots import (
    SnapshotRow,
    build_snapshot,
    counts_tree,
    load_tree,
    read_leaves,
    rows_tree,
    tree_bytes,
)
from hub.datanets.spec import DatanetSpec, MembersSpec
from openledger_sdk.ledger.records import derive_id
from openledger_sdk.merkle import StandardMerkleTree

log = logging.getLogger("hub.datanets")
LOOKUP_BATCH = 500  # row hashes per IN (...) query: well under SQLite's variable limit
INSERT_BATCH = 5000  # rows per executemany: bounds the parameter lists held at once
MAX_LISTED_ERRORS = 1000  # `errors` details per rejection; `bad_lines` always lists every bad line


class Actor(Protocol):
    """The acting hub user (hub.auth.HubUser fits)."""

    name: str
    admin: bool


class DatanetError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail if isinstance(detail, str) else detail.get("message", "datanet error"))
        self.status = status
        self.detail = detail


class ChainWriter(Protocol):
    """Adds DatanetRegistry writes to the caller's transaction (the relay's outbox); returns the outbox row id."""

    def create_datanet(self, session: Session, datanet: Datanet) -> int | None: ...

    def publish_version(self, session: Session, datanet: Datanet, version: DatanetVersion) -> int | None: ...

    def status(self, session: Session, outbox_id: int | None) -> dict[str, Any]: ...

    def committed(self) -> None: ...


# username → checksum address (the user's custodial wallet, created on first use).
AddressBook = Callable[[str], str]


@dataclass(frozen=True)
class _Upload:
    contributor: str
    address: str
    auto: bool  # approval policy "auto": valid uploads are approved at once
    source: str
    filename: str | None
    path: Path | None
    total: int  # rows in the upload, for the rejection message


@dataclass
class _VersionCache:
    tree: StandardMerkleTree
    position: dict[int, int]  # row id → value index in the tree


class DatanetService:
    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        addresses: AddressBook,
        chain: ChainWriter | None = None,
        upload_dir: Path | None = None,
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        self.upload_dir = upload_dir or Path(tempfile.gettempdir()) / "openledger-uploads"
        self.addresses = addresses
        self.chain = chain
        self.limits = config.settings
        self.hasher = MinHasher(self.limits.near_dup_num_perm, self.limits.near_dup_shingle)
        self._indexes: dict[int, NearDupIndex] = {}
        self._loaded_upto: dict[int, int] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._trees: OrderedDict[tuple[int, int], _VersionCache] = OrderedDict()

    # Access --------------------------------------------------------------------------------------------------------
    def _lock(self, datanet_id: int) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(datanet_id, threading.Lock())

    @staticmethod
    def _role(session: Session, datanet: Datanet, actor: Actor) -> str | None:
        if actor.name == datanet.owner:
            return "owner"
        member = session.exec(
            select(DatanetMember).where(DatanetMember.datanet_id == datanet.id, DatanetMember.username == actor.name)
        ).first()
        return member.role if member else None

    def _visible(self, session: Session, name: str, actor: Actor) -> tuple[Datanet, str | None]:
        datanet = session.exec(select(Datanet).where(Datanet.name == name)).first()
        role = self._role(session, datanet, actor) if datanet else None
        if datanet is None or (datanet.visibility == Visibility.PRIVATE and role is None and not actor.admin):
            raise DatanetError(404, f"no datanet named {name!r} (or it is private and you are not a member)")
        return datanet, role

    @staticmethod
    def _require_curator(datanet: Datanet, role: str | None, actor: Actor) -> None:
        if role not in ("owner", Role.VALIDATOR):
            raise DatanetError(
                403, f"only the owner ({datanet.owner}) or a validator of {datanet.name!r} may review submissions"
            )

    @staticmethod
    def _require_owner(datanet: Datanet, role: str | None, what: str) -> None:
        if role != "owner":
            raise DatanetError(403, f"only the owner of {datanet.name!r} ({datanet.owner}) may {what}")

    @staticmethod
    def _require_contributor(datanet: Datanet, role: str | None) -> None:
        if datanet.visibility == Visibility.PRIVATE and role is None:
            raise DatanetError(403, f"{datanet.name!r} is private: only its owner and members may contribute")

    # Datanets ------------------------------------------------------------------------------------------------------
    def create(self, actor: Actor, spec: DatanetSpec) -> dict[str, Any]:
        owner_address = self.addresses(actor.name)
        with Session(self.engine) as session:
            if session.exec(select(Datanet.id).where(Datanet.name == spec.name)).first() is not None:
                raise DatanetError(409, f"a datanet named {spec.name!r} exists already: pick another name")
            metadata = {
                "name": spec.name,
                "owner": owner_address,
                "summary": spec.summary,
                "description": spec.description,
                "tags": spec.tags,
                "license": spec.license,
                "schema": spec.row_schema,
            }
            datanet = Datanet(
                name=spec.name,
                owner=actor.name,
                owner_address=owner_address,
                summary=spec.summary,
                description=spec.description,
                tags=spec.tags,
                license=spec.license,
                row_schema=spec.row_schema,
                visibility=spec.visibility,
                approval=spec.approval,
                search_text=" ".join([spec.name, spec.summary, spec.description, *spec.tags]).lower(),
                # A fresh id per datanet row: a recreated name (new database, same chain) must not collide on-chain.
                chain_id=hex_hash(derive_id("datanet", f"{spec.name}:{uuid.uuid4()}")),
                metadata_hash=hex_hash(keccak(canonical_json(metadata))),
                dedup_params=self.hasher.params,
            )
            session.add(datanet)
            try:
                session.flush()
            except IntegrityError:
                raise DatanetError(409, f"a datanet named {spec.name!r} exists already: pick another name") from None
            self._set_members(session, datanet, spec)
            if self.chain is not None:
                self.chain.create_datanet(session, datanet)
            session.commit()
            if self.chain is not None:
                self.chain.committed()
            return self._describe(session, datanet, "owner", counts=True)

    def _set_members(self, session: Session, datanet: Datanet, spec: MembersSpec) -> None:
        session.exec(delete(DatanetMember).where(DatanetMember.datanet_id == datanet.id))
        roles = {name: Role.MEMBER for name in spec.members} | {name: Role.VALIDATOR for name in spec.validators}
        roles.pop(datanet.owner, None)
        session.add_all(DatanetMember(datanet_id=datanet.id, username=name, role=role) for name, role in roles.items())

    def set_members(self, actor: Actor, name: str, spec: MembersSpec) -> dict[str, Any]:
        with Session(self.engine) as session:
            datanet, role = self._visible(session, name, actor)
            self._require_owner(datanet, role, "change its members")
            self._set_members(session, datanet, spec)
            session.commit()
            return self._describe(session, datanet, role, counts=True)

    def get(self, actor: Actor, name: str) -> dict[str, Any]:
        with Session(self.engine) as session:
            datanet, role = self._visible(session, name, actor)
            return self._describe(session, datanet, role, counts=True)

    def search(self, actor: Actor, q: str = "", tags: Sequence[str] = (), mine: bool = False) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            query = select(Datanet).order_by(Datanet.name)
            for word in q.lower().split():
                query = query.where(col(Datanet.search_text).contains(word, autoescape=True))
            roles = dict(
                session.exec(
                    select(DatanetMember.datanet_id, DatanetMember.role).where(DatanetMember.username == actor.name)
                ).all()
            )
            wanted = {tag.strip().lower() for tag in tags if tag.strip()}
            found = []
            for datanet in session.exec(query):
                role = "owner" if datanet.owner == actor.name else roles.get(datanet.id)
                if datanet.visibility == Visibility.PRIVATE and role is None and not actor.admin:
                    continue
                if (mine and role is None) or not wanted <= set(datanet.tags):
                    continue
                found.append(self._describe(session, datanet, role))
            return found

    def _describe(self, session: Session, datanet: Datanet, role: str | None, counts: bool = False) -> dict[str, Any]:
        members = session.exec(select(DatanetMember).where(DatanetMember.datanet_id == datanet.id)).all()
        info: dict[str, Any] = {
            "name": datanet.name,
            "owner": datanet.owner,
            "owner_address": datanet.owner_address,
            "summary": datanet.summary,
            "description": datanet.description,
            "tags": datanet.tags,
            "license": datanet.license,
            "schema": datanet.row_schema,
            "visibility": datanet.visibility,
            "approval": datanet.approval,
            "members": sorted(m.username for m in members if m.role == Role.MEMBER),
            "validators": sorted(m.username for m in members if m.role == Role.VALIDATOR),
            "your_role": role,
            "latest_version": datanet.latest_version or None,
            "chain_id": datanet.chain_id,
            "metadata_hash": datanet.metadata_hash,
            "created_at": datanet.created_at.isoformat(),
        }
        if counts:
            rows = session.exec(
                select(Submission.status, func.count(DatanetRow.id))
                .join(DatanetRow, col(DatanetRow.submission_id) == Submission.id)
                .where(Submission.datanet_id == datanet.id)
                .group_by(Submission.status)
            ).all()
            info["rows"] = {status.value: 0 for status in SubmissionStatus} | dict(rows)
            info["rows"].pop(SubmissionStatus.REJECTED, None)  # rejected rows are removed
        return info

    # Contributions -------------------------------------------------------------------------------------------------
    def check_contributor(self, actor: Actor, name: str) -> None:
        """404/403 before an upload's body is read."""
        with Session(self.engine) as session:
            datanet, role = self._visible(session, name, actor)
            self._require_contributor(datanet, role)

    def contribute_rows(self, actor: Actor, name: str, rows: Sequence[Any]) -> dict[str, Any]:
        """Rows sent as JSON; `line` in errors is the row's 1-based position in the list."""
        parsed = (ParsedRow(number, row) for number, row in enumerate(rows, start=1))
        return self._contribute(actor, name, lambda _schema: parsed, source="rows")

    def contribute_file(self, actor: Actor, name: str, path: Path, filename: str) -> dict[str, Any]:
        """An uploaded file (already on local disk, size-checked); stored in the blob store if accepted."""
        return self._contribute(
            actor, name, lambda schema: parse_file(path, filename, schema), source="file", path=path, filename=filename
        )

    def _contribute(
        self,
        actor: Actor,
        name: str,
        parse: Callable[[RowSchema], Iterable[ParsedRow]],
        *,
        source: str,
        path: Path | None = None,
        filename: str | None = None,
    ) -> dict[str, Any]:
        with Session(self.engine) as session:
            datanet, role = self._visible(session, name, actor)
            self._require_contributor(datanet, role)
            datanet_id = datanet.id
            auto = datanet.approval == Approval.AUTO
        address = self.addresses(actor.name)
        schema = RowSchema.parse(datanet.row_schema)
        with self._lock(datanet_id), Session(self.engine) as session:
            try:
                rows, problems = check_rows(parse(schema), schema, self.limits)
            except FileRejected as err:
                raise DatanetError(err.status, str(err)) from None
            total = len(rows) + len(problems)
            if not rows and not problems:
                raise DatanetError(400, f"no rows found in {filename or 'the request'}")
            problems += self._exact_duplicates(session, datanet_id, rows)
            duplicated = {problem.line for problem in problems}
            index = self._index(session, datanet_id)
            unique = [row for row in rows if row.line not in duplicated]
            near, added = near_duplicates(unique, index, self.hasher, self.limits)
            try:
                problems += self._resolve_near(session, datanet_id, index, near)
                if problems:
                    raise self._rejection(problems, total, filename)
                upload = _Upload(actor.name, address, auto, source, filename, path, total)
                submission = self._store(session, datanet_id, upload, rows)
            except BaseException:
                for key in added:
                    index.remove(key)  # this upload's rows were in the index only provisionally
                raise
            return self._submission_json(submission, datanet.name)

    def _store(self, session: Session, datanet_id: int, upload: _Upload, rows: list[Candidate]) -> Submission:
        """The submission and its rows in one transaction (plus the uploaded file in the blob store)."""
        blob = self.blobs.put_file(upload.path) if upload.path is not None else None  # harmless if the commit fails
        submission = Submission(
            datanet_id=datanet_id,
            contributor=upload.contributor,
            contributor_address=upload.address,
            status=SubmissionStatus.APPROVED if upload.auto else SubmissionStatus.PENDING,
            reason="approved automatically (valid, no duplicates)" if upload.auto else "",
            reviewed_by="auto" if upload.auto else None,
            reviewed_at=utcnow() if upload.auto else None,
            source=upload.source,
            filename=upload.filename,
            file_digest=blob.digest if blob else None,
            file_bytes=blob.size if blob else None,
            row_count=len(rows),
        )
        try:
            session.add(submission)
            session.flush()
            self._insert_rows(session, datanet_id, submission, rows)
            session.commit()
        except IntegrityError:
            # Another upload committed one of these rows first (another process): the unique (datanet, row hash)
            # lets exactly one win; the loser gets the same answer as if it had come second.
            session.rollback()
            problems = self._exact_duplicates(session, datanet_id, rows)
            if not problems:
                raise
            raise self._rejection(problems, upload.total, upload.filename) from None
        return submission

    def _insert_rows(self, session: Session, datanet_id: int, submission: Submission, rows: list[Candidate]) -> None:
        now = utcnow()
        for start in range(0, len(rows), INSERT_BATCH):
            self._insert_batch(session, datanet_id, submission, rows[start : start + INSERT_BATCH], now)

    def _insert_batch(
        self, session: Session, datanet_id: int, submission: Submission, rows: list[Candidate], now: Any
    ) -> None:
        values = [
            {
                "datanet_id": datanet_id,
                "submission_id": submission.id,
                "contributor": submission.contributor,
                "contributor_address": submission.contributor_address,
                "line": row.line,
                "row_hash": row.hex_hash,
                "data": row.canonical.decode("utf-8"),
                "minhash": None if row.signature is None else self.hasher.to_bytes(row.signature),
                "created_at": now,
            }
            for row in rows
        ]
        # Core executemany: one statement for all rows, in the session's transaction.
        session.connection().execute(insert(DatanetRow), values)

    def _exact_duplicates(self, session: Session, datanet_id: int, rows: list[Candidate]) -> list[Problem]:
        by_hash = {row.hex_hash: row for row in rows}
        hashes = list(by_hash)
        problems = []
        for start in range(0, len(hashes), LOOKUP_BATCH):
            found = session.exec(
                select(DatanetRow.row_hash, DatanetRow.id, DatanetRow.contributor).where(
                    DatanetRow.datanet_id == datanet_id,
                    col(DatanetRow.row_hash).in_(hashes[start : start + LOOKUP_BATCH]),
                )
            ).all()
            for row_hash, row_id, owner in found:
                problems.append(
                    Problem(
                        by_hash[row_hash].line,
                        f"duplicate of row {row_id} (contributed by {owner})",
                        "duplicate",
                        row_id=row_id,
                        owner=owner,
                    )
                )
        return problems

    def _resolve_near(
        self, session: Session, datanet_id: int, index: NearDupIndex, near: list[Problem]
    ) -> list[Problem]:
        """Near-duplicate problems keyed by index entries → row ids and owners; stale entries leave the index."""
        keys = {hex_hash(p.key) for p in near if isinstance(p.key, bytes)}
        found: dict[str, tuple[int, str]] = {}
        keys_list = list(keys)
        for start in range(0, len(keys_list), LOOKUP_BATCH):
            for row_hash, row_id, owner in session.exec(
                select(DatanetRow.row_hash, DatanetRow.id, DatanetRow.contributor).where(
                    DatanetRow.datanet_id == datanet_id,
                    col(DatanetRow.row_hash).in_(keys_list[start : start + LOOKUP_BATCH]),
                )
            ):
                found[row_hash] = (row_id, owner)
        resolved = []
        for problem in near:
            if problem.key is None:
                resolved.append(problem)
                continue
            hit = found.get(hex_hash(problem.key))
            if hit is None:
                index.remove(problem.key)  # rejected meanwhile (maybe by another process)
                continue
            problem.row_id, problem.owner = hit
            problem.error = (
                f"near duplicate (similarity {problem.similarity:.2f}) of row {hit[0]} (contributed by {hit[1]})"
            )
            resolved.append(problem)
        return resolved

    @staticmethod
    def _rejection(problems: list[Problem], total: int, filename: str | None) -> DatanetError:
        problems.sort(key=lambda p: p.line)
        bad_lines = sorted({p.line for p in problems})
        where = f" of {filename}" if filename else ""
        detail = {
            "message": f"{len(bad_lines)} of {total} rows{where} were refused; nothing of this upload was stored",
            "error_count": len(problems),
            "bad_lines": bad_lines,
            "errors": [p.to_json() for p in problems[:MAX_LISTED_ERRORS]],
        }
        return DatanetError(422, detail)

    # Near-duplicate index ------------------------------------------------------------------------------------------
    def _index(self, session: Session, datanet_id: int) -> NearDupIndex:
        """The datanet's index, brought up to date with rows committed since it was last read (other processes)."""
        index = self._indexes.get(datanet_id)
        if index is None:
            index = self._indexes[datanet_id] = NearDupIndex(self.hasher, self.limits.near_dup_threshold)
            self._loaded_upto[datanet_id] = 0
        newer = session.exec(
            select(DatanetRow.id, DatanetRow.row_hash, DatanetRow.minhash)
            .where(DatanetRow.datanet_id == datanet_id, DatanetRow.id > self._loaded_upto[datanet_id])
            .order_by(DatanetRow.id)
        ).all()
        items = []
        for row_id, row_hash, minhash in newer:
            self._loaded_upto[datanet_id] = row_id
            signature = self.hasher.from_bytes(minhash) if minhash else None
            if signature is not None:
                items.append((bytes.fromhex(row_hash[2:]), signature))
        index.add_many(items)
        return index

    def rebuild_indexes(self) -> None:
        """At start: recompute signatures made with other MinHash settings, then load every datanet's index."""
        with Session(self.engine) as session:
            for datanet in session.exec(select(Datanet)).all():
                if datanet.dedup_params != self.hasher.params:
                    self._recompute_signatures(session, datanet)
                self._index(session, datanet.id)
                log.info(
                    "datanet %s: %d rows in the near-duplicate index", datanet.name, len(self._indexes[datanet.id])
                )

    def _recompute_signatures(self, session: Session, datanet: Datanet) -> None:
        rows = session.exec(select(DatanetRow.id, DatanetRow.data).where(DatanetRow.datanet_id == datanet.id)).all()
        texts = {row_id: normalise(_row_text(data)) for row_id, data in rows}
        eligible = [(row_id, text) for row_id, text in texts.items() if len(text) >= self.limits.near_dup_min_chars]
        signatures = self.hasher.signatures([text for _, text in eligible]) if eligible else []
        updates = {row_id: self.hasher.to_bytes(sig) for (row_id, _), sig in zip(eligible, signatures, strict=True)}
        for row_id, _ in rows:
            session.connection().execute(
                DatanetRow.__table__.update()
                .where(DatanetRow.__table__.c.id == row_id)
                .values(minhash=updates.get(row_id))
            )
        datanet.dedup_params = self.hasher.params
        session.add(datanet)
        session.commit()
        log.info("datanet %s: recomputed %d near-duplicate signatures", datanet.name, len(updates))

    def sync_chain(self) -> int:
        """Enqueue the registry writes of datanets and versions made while no ledger was up; returns how many
        versions were enqueued. Enqueuing is idempotent, so running this again changes nothing."""
        if self.chain is None:
            return 0
        enqueued = 0
        with Session(self.engine) as session:
            for datanet in session.exec(select(Datanet).order_by(Datanet.id)).all():
                if self.chain.create_datanet(session, datanet) is None:
                    return 0  # still no ledger
                versions = session.exec(
                    select(DatanetVersion)
                    .where(DatanetVersion.datanet_id == datanet.id, col(DatanetVersion.outbox_id).is_(None))
                    .order_by(DatanetVersion.version)
                ).all()
                for version in versions:
                    version.outbox_id = self.chain.publish_version(session, datanet, version)
                    session.add(version)
                    enqueued += 1
            session.commit()
        self.chain.committed()
        return enqueued

    # Submissions and curation --------------------------------------------------------------------------------------
    @staticmethod
    def _submission_json(submission: Submission, datanet: str) -> dict[str, Any]:
        return {
            "id": submission.id,
            "datanet": datanet,
            "contributor": submission.contributor,
            "contributor_address": submission.contributor_address,
            "status": submission.status,
            "reason": submission.reason,
            "reviewed_by": submission.reviewed_by,
            "reviewed_at": submission.reviewed_at.isoformat() if submission.reviewed_at else None,
            "source": submission.source,
            "filename": submission.filename,
            "file_digest": submission.file_digest,
            "file_bytes": submission.file_bytes,
            "rows": submission.row_count,
            "created_at": submission.created_at.isoformat(),
        }

    def submissions(
        self, actor: Actor, name: str, status: str | None = None, mine: bool = False
    ) -> list[dict[str, Any]]:
        """The caller's own submissions; curators (owner, validators) see everyone's unless `mine`."""
        with Session(self.engine) as session:
            datanet, role = self._visible(session, name, actor)
            query = select(Submission).where(Submission.datanet_id == datanet.id).order_by(Submission.id)
            if mine or role not in ("owner", Role.VALIDATOR):
                query = query.where(Submission.contributor == actor.name)
            if status:
                if status not in {s.value for s in SubmissionStatus}:
                    raise DatanetError(400, f"status must be one of {', '.join(s.value for s in SubmissionStatus)}")
                query = query.where(Submission.status == status)
            return [self._submission_json(s, datanet.name) for s in session.exec(query)]

    def _submission(self, session: Session, datanet: Datanet, submission_id: int) -> Submission:
        submission = session.get(Submission, submission_id)
        if submission is None or submission.datanet_id != datanet.id:
            raise DatanetError(404, f"no submission {submission_id} in {datanet.name!r}")
        return submission

    def submission(self, actor: Actor, name: str, submission_id: int) -> dict[str, Any]:
        with Session(self.engine) as session:
            datanet, role = self._visible(session, name, actor)
            submission = self._submission(session, datanet, submission_id)
            self._require_reader(datanet, role, submission, actor)
            return self._submission_json(submission, datanet.name)

    @staticmethod
    def _require_reader(datanet: Datanet, role: str | None, submission: Submission, actor: Actor) -> None:
        if submission.contributor != actor.name and role not in ("owner", Role.VALIDATOR):
            raise DatanetError(
                403, f"submission {submission.id} is {submission.contributor}'s: only they and curators see it"
            )

    def submission_rows(
        self, actor: Actor, name: str, submission_id: int, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            datanet, role = self._visible(session, name, actor)
            submission = self._submission(session, datanet, submission_id)
            self._require_reader(datanet, role, submission, actor)
            rows = session.exec(
                select(DatanetRow)
                .where(DatanetRow.submission_id == submission.id)
                .order_by(DatanetRow.id)
                .offset(offset)
                .limit(min(max(limit, 1), 1000))
            ).all()
            return [{"row_id": r.id, "line": r.line, "row_hash": r.row_hash, "data": json.loads(r.data)} for r in rows]

    def review(self, actor: Actor, name: str, submission_id: int, approve: bool, reason: str) -> dict[str, Any]:
        reason = reason.strip()
        if not approve and not reason:
            raise DatanetError(400, "a rejection needs a reason: the contributor sees it")
        with Session(self.engine) as session:
            datanet, role = self._visible(session, name, actor)
            self._require_curator(datanet, role, actor)
        with self._lock(datanet.id), Session(self.engine) as session:
            submission = self._submission(session, datanet, submission_id)
            wanted = SubmissionStatus.APPROVED if approve else SubmissionStatus.REJECTED
            if submission.status == SubmissionStatus.REJECTED and approve:
                raise DatanetError(
                    409, f"submission {submission_id} was rejected and its rows removed: contribute again"
                )
            if submission.status != wanted:
                removed: list[str] = []
                if not approve:
                    # Rejected rows leave the datanet (published snapshots keep theirs), so others may contribute them.
                    removed = list(
                        session.exec(select(DatanetRow.row_hash).where(DatanetRow.submission_id == submission.id))
                    )
                    session.exec(delete(DatanetRow).where(DatanetRow.submission_id == submission.id))
                submission.status = wanted
                submission.reason = reason
                submission.reviewed_by = actor.name
                submission.reviewed_at = utcnow()
                session.add(submission)
                session.commit()
                index = self._indexes.get(datanet.id)
                for row_hash in removed if index is not None else []:
                    index.remove(bytes.fromhex(row_hash[2:]))
            return self._submission_json(submission, datanet.name)

    # Versions ------------------------------------------------------------------------------------------------------
    def publish(self, actor: Actor, name: str) -> dict[str, Any]:
        with Session(self.engine) as session:
            datanet, role = self._visible(session, name, actor)
            self._require_owner(datanet, role, "publish a version")
        with self._lock(datanet.id), Session(self.engine) as session:
            datanet = session.get(Datanet, datanet.id)
            approved = session.exec(
                select(
                    DatanetRow.id,
                    DatanetRow.row_hash,
                    DatanetRow.contributor_address,
                    DatanetRow.data,
                    DatanetRow.contributor,
                )
                .join(Submission, col(DatanetRow.submission_id) == Submission.id)
                .where(DatanetRow.datanet_id == datanet.id, Submission.status == SubmissionStatus.APPROVED)
                .order_by(DatanetRow.id)
            ).all()
            if not approved:
                raise DatanetError(409, f"{name!r} has no approved rows to publish: approve submissions first")
            snapshot = build_snapshot(
                [SnapshotRow(r[0], r[1], r[2], r[3]) for r in approved], RowSchema.parse(datanet.row_schema)
            )
            latest = self._version_row(session, datanet, datanet.latest_version) if datanet.latest_version else None
            if latest is not None and latest.merkle_root == snapshot.merkle_root:
                raise DatanetError(409, f"nothing changed since version {latest.version} of {name!r}")
            blob = self.blobs.put_bytes(snapshot.parquet)
            tree_blob = self.blobs.put_bytes(tree_bytes(snapshot.tree))
            users = {address: user for _, _, address, _, user in approved}
            version = DatanetVersion(
                datanet_id=datanet.id,
                version=datanet.latest_version + 1,
                merkle_root=snapshot.merkle_root,
                counts_root=snapshot.counts_root,
                row_count=snapshot.row_count,
                contributor_counts=[
                    {"address": address, "user": users[address], "rows": rows} for address, rows in snapshot.counts
                ],
                snapshot_digest=blob.digest,
                snapshot_bytes=blob.size,
                tree_digest=tree_blob.digest,
                published_by=actor.name,
            )
            datanet.latest_version = version.version
            session.add_all([version, datanet])
            try:
                session.flush()
            except IntegrityError:
                raise DatanetError(409, f"another version of {name!r} was published at the same time: retry") from None
            if self.chain is not None:
                version.outbox_id = self.chain.publish_version(session, datanet, version)
            session.commit()
            if self.chain is not None:
                self.chain.committed()
            self._cache_tree(datanet.id, version.version, snapshot.tree)
            return self._version_json(session, datanet, version)

    def _version_row(self, session: Session, datanet: Datanet, version: int | str) -> DatanetVersion:
        number = datanet.latest_version if version == "latest" else _version_number(version)
        found = session.exec(
            select(DatanetVersion).where(DatanetVersion.datanet_id == datanet.id, DatanetVersion.version == number)
        ).first()
        if found is None:
            raise DatanetError(
                404, f"{datanet.name!r} has no version {version} (latest: {datanet.latest_version or 'none'})"
            )
        return found

    def _version_json(self, session: Session, datanet: Datanet, version: DatanetVersion, full: bool = False) -> dict:
        info: dict[str, Any] = {
            "datanet": datanet.name,
            "version": version.version,
            "merkle_root": version.merkle_root,
            "row_count": version.row_count,
            "contributors_root": version.counts_root,
            "leaf_encoding": ["uint256 row_id", "bytes32 row_hash", "address contributor"],
            "snapshot": {"digest": version.snapshot_digest, "bytes": version.snapshot_bytes, "format": "parquet"},
            "published_by": version.published_by,
            "created_at": version.created_at.isoformat(),
            "chain": {"datanet_id": datanet.chain_id, "outbox_id": version.outbox_id}
            | (self.chain.status(session, version.outbox_id) if self.chain is not None else {"status": "off"}),
        }
        counts = version.contributor_counts
        if full and counts:
            tree = counts_tree([(c["address"], c["rows"]) for c in counts])
            info["contributor_counts"] = [c | {"proof": tree.get_proof(i)} for i, c in enumerate(counts)]
        else:
            info["contributor_counts"] = counts
        return info

    def versions(self, actor: Actor, name: str) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            datanet, _ = self._visible(session, name, actor)
            rows = session.exec(
                select(DatanetVersion).where(DatanetVersion.datanet_id == datanet.id).order_by(DatanetVersion.version)
            ).all()
            return [self._version_json(session, datanet, v) for v in rows]

    def version(self, actor: Actor, name: str, version: int | str) -> dict[str, Any]:
        with Session(self.engine) as session:
            datanet, _ = self._visible(session, name, actor)
            return self._version_json(session, datanet, self._version_row(session, datanet, version), full=True)

    def snapshot_digest(self, actor: Actor, name: str, version: int | str) -> tuple[str, str]:
        """(blob digest, download file name) of a version's Parquet snapshot."""
        with Session(self.engine) as session:
            datanet, _ = self._visible(session, name, actor)
            row = self._version_row(session, datanet, version)
            return row.snapshot_digest, f"{datanet.name}-v{row.version}.parquet"

    def _cache_tree(self, datanet_id: int, version: int, tree: StandardMerkleTree) -> _VersionCache:
        cached = _VersionCache(tree, {int(value[0]): i for i, value in tree.entries()})
        self._trees[(datanet_id, version)] = cached
        while len(self._trees) > 8:
            self._trees.popitem(last=False)
        return cached

    def proof(self, actor: Actor, name: str, version: int | str, row_id: int) -> dict[str, Any]:
        """A row of a version with its Merkle proof: `verify_row(row, proof, root)` checks it."""
        import pyarrow.parquet as pq

        with Session(self.engine) as session:
            datanet, _ = self._visible(session, name, actor)
            row = self._version_row(session, datanet, version)
        key = (datanet.id, row.version)
        cached = self._trees.get(key)
        if cached is None:
            if row.tree_digest and self.blobs.exists(row.tree_digest):
                tree = load_tree(self.blobs.get(row.tree_digest), row.merkle_root)
            else:
                with self.blobs.open(row.snapshot_digest) as handle:
                    tree = rows_tree(read_leaves(handle))
            cached = self._cache_tree(datanet.id, row.version, tree)
        if row_id not in cached.position:
            raise DatanetError(404, f"row {row_id} is not in version {row.version} of {name!r}")
        with self.blobs.open(row.snapshot_digest) as handle:
            table = pq.read_table(handle, filters=[("_row_id", "=", row_id)])
        data = {k: v for k, v in table.to_pylist()[0].items() if v is not None}
        index = cached.position[row_id]
        return {
            "datanet": datanet.name,
            "version": row.version,
            "root": cached.tree.root,
            "row": data,
            "proof": cached.tree.get_proof(index),
            "leaf": {"row_id": row_id, "row_hash": data["_row_hash"], "contributor": data["_contributor"]},
        }


def _version_number(version: int | str) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise DatanetError(400, f"version must be a number or 'latest', got {version!r}") from None
    if number < 1:
        raise DatanetError(400, "versions start at 1")
    return number


def _row_text(data: str) -> str:
    return row_text(json.loads(data))
