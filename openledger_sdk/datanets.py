"""Datanets from a notebook: create, contribute, curate, publish, load — and check a row's inclusion yourself.

    dn = ol.datanets.create("support-chats", schema={"prompt": "str", "response": "str"}, license="CC-BY-4.0")
    dn.contribute([{"prompt": "...", "response": "..."}])      # or a DataFrame, a datasets.Dataset, or a file path
    dn.approve(dn.submissions(status="pending")[0]["id"])
    version = dn.publish()
    ds = dn.load()                                              # datasets.Dataset of the latest version
    proof = dn.proof(ds[0]["_row_id"])
    verify_row(proof["row"], proof["proof"], version["merkle_root"])

Row hashing lives here (not in the hub) so anyone holding a snapshot can recompute it: a row's hash is keccak256 of
its canonical JSON — keys sorted, no whitespace, UTF-8, strings and keys NFC-normalised, null values and
`_`-prefixed columns (the snapshot's `_row_id`, `_contributor`, `_row_hash`) left out. A version's Merkle tree is an
OpenZeppelin StandardMerkleTree over `(uint256 row_id, bytes32 row_hash, address contributor)`.

pandas, pyarrow and datasets are imported only when a method needs them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_hash.auto import keccak

from openledger_sdk.errors import OpenLedgerError
from openledger_sdk.merkle import MerkleError, verify

if TYPE_CHECKING:
    import datasets
    import pandas

    from openledger_sdk.client import Client

ROW_LEAF_TYPES: tuple[str, ...] = ("uint256", "bytes32", "address")
COUNT_LEAF_TYPES: tuple[str, ...] = ("address", "uint256")
META_PREFIX = "_"  # snapshot bookkeeping columns; never part of a row's data or hash
UPLOAD_CHUNK = 256 * 1024
ROWS_INLINE_LIMIT = 4 * 1024 * 1024  # larger row lists go up as a JSONL file, with a progress bar


# --- canonical form and hashes -------------------------------------------------------------------------------------


class CanonicalError(ValueError):
    """A value has no canonical JSON form (NaN, infinity, lone surrogates, non-string keys, unknown types)."""


def _canonical_value(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise CanonicalError("text is not valid Unicode (lone surrogate)") from None
        return unicodedata.normalize("NFC", value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        number = float(value)
        if not math.isfinite(number):
            raise CanonicalError(f"number {number} has no JSON form")
        return number
    if isinstance(value, Mapping):
        return _canonical_object(value)
    if isinstance(value, list | tuple):
        return [_canonical_value(item) for item in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays from pandas/pyarrow
        return _canonical_value(value.tolist())
    raise CanonicalError(f"values of type {type(value).__name__} have no canonical JSON form")


def _canonical_object(row: Mapping) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in row.items():
        if not isinstance(key, str):
            raise CanonicalError(f"keys must be strings, got {key!r}")
        if value is None:
            continue  # a missing optional field and an explicit null hash the same
        name = _canonical_value(key)
        if name in result:
            raise CanonicalError(f"keys {key!r} collide after Unicode normalisation")
        result[name] = _canonical_value(value)
    return result


def data_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row without snapshot bookkeeping columns (`_row_id`, `_contributor`, `_row_hash`)."""
    return {key: value for key, value in row.items() if not str(key).startswith(META_PREFIX)}


def canonical_json(row: Mapping[str, Any]) -> bytes:
    """The row's canonical JSON bytes (see the module docstring); the same content always gives the same bytes."""
    if not isinstance(row, Mapping):
        raise CanonicalError(f"a row must be a JSON object, got {type(row).__name__}")
    text = json.dumps(
        _canonical_object(row), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def row_hash(row: Mapping[str, Any]) -> bytes:
    """keccak256 of the row's canonical JSON (32 bytes)."""
    return keccak(canonical_json(row))


def row_leaf(row_id: int, hash_: bytes | str, contributor: str) -> list[Any]:
    """The Merkle leaf values of one snapshot row."""
    return [int(row_id), hash_, contributor]


def verify_row(row: Mapping[str, Any], proof: Sequence[str], root: str | bytes) -> bool:
    """True if `row` (a snapshot row: data fields plus `_row_id` and `_contributor`) is in the version with `root`.

    The row's hash is recomputed from its data fields, so a row whose content was changed does not verify.
    """
    try:
        row_id, contributor = row["_row_id"], row["_contributor"]
    except KeyError as missing:
        raise ValueError(
            f"row has no {missing} column: pass a row of a snapshot (dn.load()) or of dn.proof()"
        ) from None
    digest = row_hash(data_fields(row))
    claimed = row.get("_row_hash")
    if claimed is not None and claimed.lower() != "0x" + digest.hex():
        return False
    try:
        return verify(root, row_leaf(row_id, digest, contributor), ROW_LEAF_TYPES, proof)
    except MerkleError:
        return False


def verify_contributor_count(address: str, rows: int, proof: Sequence[str], counts_root: str | bytes) -> bool:
    """True if `address` contributed `rows` rows to the version whose contributor-counts root is `counts_root`."""
    try:
        return verify(counts_root, [address, int(rows)], COUNT_LEAF_TYPES, proof)
    except MerkleError:
        return False


# --- talking to the platform ----------------------------------------------------------------------------------------


class ContributionRejected(OpenLedgerError):
    """The platform refused a contribution; `errors` lists every bad row (`line`, `error`, maybe `row_id`, `owner`)."""

    def __init__(self, message: str, status: int, errors: list[dict[str, Any]]) -> None:
        super().__init__(message, status)
        self.errors = errors


def _rejection(response: Any) -> OpenLedgerError:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text[:300]
    where = f"{response.request.method} {response.request.url.path} → {response.status_code}"
    if isinstance(detail, dict) and "errors" in detail:
        errors = list(detail["errors"])
        shown = "\n".join(f"  line {e.get('line')}: {e.get('error')}" for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        return ContributionRejected(f"{where}: {detail.get('message')}\n{shown}{more}", response.status_code, errors)
    return OpenLedgerError(f"{where}: {detail}", response.status_code)


class Datanets:
    """`ol.datanets`: create, list, search and open datanets."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._client.send(method, self._client.service_url("platform", f"api/datanets{path}"), **kwargs)
        if response.status_code >= 400:
            raise _rejection(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        return response.json() if response.content else None

    def create(
        self,
        name: str,
        *,
        summary: str = "",
        description: str = "",
        tags: Sequence[str] = (),
        license: str = "CC-BY-4.0",
        schema: Mapping[str, str] | str = "text",
        visibility: str = "public",
        approval: str = "owner",
        members: Sequence[str] = (),
        validators: Sequence[str] = (),
    ) -> Datanet:
        """A new datanet you own. `schema`: `{"field": "str" | "int" | "float" | "bool" (+ "?" = optional)}` or
        "text" (one `text` field; .txt/.md files split into paragraphs). `approval`: "owner" (owner and validators
        approve each submission) or "auto" (valid submissions are approved at once; validators may still reject)."""
        if isinstance(schema, Mapping):
            # {"prompt": str} works as well as {"prompt": "str"}.
            schema = {key: getattr(kind, "__name__", kind) for key, kind in schema.items()}
        body = {
            "name": name,
            "summary": summary,
            "description": description,
            "tags": list(tags),
            "license": license,
            "schema": schema,
            "visibility": visibility,
            "approval": approval,
            "members": list(members),
            "validators": list(validators),
        }
        return Datanet(self, self._json("POST", "", json=body))

    def list(self, *, tags: Sequence[str] = (), mine: bool = False) -> list[Datanet]:
        """Every datanet you can see (public ones, and private ones you own or are a member of)."""
        return self.search("", tags=tags, mine=mine)

    def search(self, q: str = "", *, tags: Sequence[str] = (), mine: bool = False) -> list[Datanet]:
        """Datanets whose name, summary, description or tags contain `q`, having all of `tags`."""
        params: dict[str, Any] = {"q": q, "mine": mine}
        if tags:
            params["tags"] = ",".join(tags)
        return [Datanet(self, info) for info in self._json("GET", "", params=params)]

    def get(self, name: str) -> Datanet:
        return Datanet(self, self._json("GET", f"/{name}"))


class Datanet:
    """One datanet; `info` holds the platform's description (owner, schema, license, counts, latest version...)."""

    def __init__(self, api: Datanets, info: dict[str, Any]) -> None:
        self._api = api
        self.info = info

    name = property(lambda self: self.info["name"])
    owner = property(lambda self: self.info["owner"])
    schema = property(lambda self: self.info["schema"])
    latest_version = property(lambda self: self.info.get("latest_version"))

    def __repr__(self) -> str:
        return f"<Datanet {self.name} by {self.owner}, {self.info.get('visibility')}, v{self.latest_version or 0}>"

    def _path(self, path: str = "") -> str:
        return f"/{self.name}{path}"

    def refresh(self) -> Datanet:
        self.info = self._api._json("GET", self._path())
        return self

    def set_members(self, members: Sequence[str] = (), validators: Sequence[str] = ()) -> Datanet:
        """Owner only: who may see a private datanet and contribute (members) and who may curate (validators)."""
        body = {"members": list(members), "validators": list(validators)}
        self.info = self._api._json("PUT", self._path("/members"), json=body)
        return self

    # Contributing.
    def contribute(self, data: Any, *, progress: bool = True) -> dict[str, Any]:
        """Submit rows: a list of dicts (or of strings, for a free-text datanet), a pandas DataFrame, a
        datasets.Dataset, or a file path (str or Path: .jsonl, .json, .csv, .parquet, .txt, .md). One call is one
        submission: every row is valid and new, or nothing is stored and `ContributionRejected.errors` lists each
        bad row by line."""
        if isinstance(data, str | os.PathLike):
            return self._upload_file(Path(data), progress=progress)
        if _is_dataframe(data) or _is_dataset(data):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "contribution.parquet"
                if _is_dataset(data):
                    data.to_parquet(str(path))
                else:
                    data.to_parquet(path, index=False)
                return self._upload_file(path, progress=progress)
        if isinstance(data, Mapping):
            data = [data]
        rows = [self._as_row(row) for row in data]
        body = json.dumps({"rows": rows}, default=_json_default, ensure_ascii=False).encode("utf-8")
        if len(body) <= ROWS_INLINE_LIMIT:
            headers = {"Content-Type": "application/json"}
            return self._api._json("POST", self._path("/rows"), content=body, headers=headers)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rows.jsonl"
            with path.open("w", encoding="utf-8") as out:
                for row in rows:
                    out.write(json.dumps(row, default=_json_default, ensure_ascii=False) + "\n")
            return self._upload_file(path, progress=progress)

    def _as_row(self, row: Any) -> dict[str, Any]:
        if isinstance(row, str):
            # Plain text fits a free-text datanet (one text field), like a line of a .txt file.
            fields = list(self.schema) if isinstance(self.schema, Mapping) else ["text"]
            if len(fields) != 1:
                raise OpenLedgerError(f"{self.name} rows need fields {', '.join(fields)}; got plain text {row[:60]!r}")
            return {fields[0]: row}
        return dict(row)

    def _upload_file(self, path: Path, *, progress: bool) -> dict[str, Any]:
        if not path.is_file():
            raise OpenLedgerError(f"no such file: {path}")
        size = path.stat().st_size
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        with _progress(size, f"upload {path.name}", progress) as bar:

            def chunks() -> Iterator[bytes]:  # called again for each attempt if the connection drops
                bar.reset()
                with path.open("rb") as handle:
                    while chunk := handle.read(UPLOAD_CHUNK):
                        bar.update(len(chunk))
                        yield chunk

            return self._api._json(
                "POST", self._path("/files"), params={"filename": path.name}, content=chunks, headers=headers
            )

    def submissions(self, *, status: str | None = None, mine: bool = False) -> list[dict[str, Any]]:
        """Submissions with their status and the curator's reason: yours, or all of them if you curate."""
        params: dict[str, Any] = {"mine": mine}
        if status:
            params["status"] = status
        return self._api._json("GET", self._path("/submissions"), params=params)

    def submission_rows(self, submission_id: int, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        params = {"limit": limit, "offset": offset}
        return self._api._json("GET", self._path(f"/submissions/{submission_id}/rows"), params=params)

    # Curating (owner and validators).
    def approve(self, submission: int | dict | Sequence[int | dict], reason: str = "") -> list[dict[str, Any]]:
        return [self._review(one, "approve", reason) for one in _submission_ids(submission)]

    def reject(self, submission: int | dict | Sequence[int | dict], reason: str) -> list[dict[str, Any]]:
        return [self._review(one, "reject", reason) for one in _submission_ids(submission)]

    def _review(self, submission_id: int, action: str, reason: str) -> dict[str, Any]:
        path = self._path(f"/submissions/{submission_id}/{action}")
        return self._api._json("POST", path, json={"reason": reason})

    # Versions.
    def publish(self) -> dict[str, Any]:
        """Owner only: freeze the approved rows into a new version (Parquet snapshot + Merkle root, put on-chain)."""
        version = self._api._json("POST", self._path("/versions"))
        self.info["latest_version"] = version["version"]
        return version

    def versions(self) -> list[dict[str, Any]]:
        return self._api._json("GET", self._path("/versions"))

    def version(self, version: int | str = "latest") -> dict[str, Any]:
        """One version: Merkle root, row count, per-contributor counts (with proofs) and the on-chain status."""
        return self._api._json("GET", self._path(f"/versions/{version}"))

    def proof(self, row_id: int, version: int | str = "latest") -> dict[str, Any]:
        """`{"row", "proof", "root", "version"}`: check it with `verify_row(p["row"], p["proof"], p["root"])`."""
        return self._api._json("GET", self._path(f"/versions/{version}/rows/{row_id}/proof"))

    def download(self, version: int | str = "latest", path: str | os.PathLike[str] = ".") -> Path:
        """Save the version's Parquet snapshot (into a directory, or to a file path); checks its sha256."""
        meta = self.version(version)
        target = Path(path)
        if target.is_dir():
            target = target / f"{self.name}-v{meta['version']}.parquet"
        digest = meta["snapshot"]["digest"]
        tmp = target.with_name(target.name + ".part")
        hasher = hashlib.sha256()
        response_path = self._path(f"/versions/{meta['version']}/snapshot")
        url = self._api._client.service_url("platform", f"api/datanets{response_path}")
        with self._api._client._http.stream("GET", url) as response:
            if response.status_code >= 400:
                response.read()
                raise _rejection(response)
            with (
                _progress(meta["snapshot"]["bytes"], f"download v{meta['version']}", True) as bar,
                tmp.open("wb") as out,
            ):
                for chunk in response.iter_bytes():
                    hasher.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
        if hasher.hexdigest() != digest:
            tmp.unlink(missing_ok=True)
            raise OpenLedgerError(f"downloaded snapshot does not match its digest {digest}: try again")
        os.replace(tmp, target)
        return target

    def _cached_snapshot(self, version: int | str) -> Path:
        meta = self.version(version)
        cache = _cache_dir() / f"{meta['snapshot']['digest']}.parquet"
        if not cache.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            self.download(meta["version"], cache)
        return cache

    def to_arrow(self, version: int | str = "latest") -> Any:
        import pyarrow.parquet as pq

        return pq.read_table(self._cached_snapshot(version))

    def to_pandas(self, version: int | str = "latest") -> pandas.DataFrame:
        return self.to_arrow(version).to_pandas()

    def load(self, version: int | str = "latest") -> datasets.Dataset:
        """The version as an in-memory `datasets.Dataset` (columns: the schema's fields, `_row_id`, `_contributor`,
        `_row_hash`)."""
        import datasets
        from datasets.table import InMemoryTable

        return datasets.Dataset(InMemoryTable(self.to_arrow(version)))


def _submission_ids(submission: int | dict | Sequence[int | dict]) -> list[int]:
    items = submission if isinstance(submission, list | tuple) else [submission]
    return [int(item["id"]) if isinstance(item, Mapping) else int(item) for item in items]


def _is_dataframe(data: Any) -> bool:
    return type(data).__module__.startswith("pandas") and hasattr(data, "to_parquet")


def _is_dataset(data: Any) -> bool:
    return type(data).__module__.startswith("datasets") and hasattr(data, "to_parquet")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"values of type {type(value).__name__} cannot be sent as JSON")


def _cache_dir() -> Path:
    base = os.environ.get("OPENLEDGER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "openledger")
    return Path(base) / "datanets"


class _NoBar:
    def update(self, _n: int) -> None:
        pass

    def reset(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass


def _progress(total: int, description: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, leave=False)
