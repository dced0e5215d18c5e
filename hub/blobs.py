"""Content-addressed blob store: bytes are named by their sha256, stored at `ab/cd/<digest>` under one root.

The root is a local directory by default or any fsspec URL (`s3://bucket/blobs`, `memory://blobs`, ...). Writes go to
a temporary name first and are moved into place, so a reader never sees half a blob; an existing blob is never
rewritten (same digest, same bytes). Digests are validated before they become paths, so no caller-supplied string
can reach outside the root.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem

CHUNK_SIZE = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class BlobError(Exception):
    """A blob store operation failed; the message says what."""


class BlobNotFound(BlobError, KeyError):
    """No blob with that digest."""


@dataclass(frozen=True)
class Blob:
    digest: str  # sha256, lower-case hex
    size: int


def check_digest(digest: str) -> str:
    """The digest itself if it is 64 lower-case hex characters; anything else is refused, never turned into a path."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise BlobError(f"not a sha256 digest: {str(digest)[:80]!r}")
    return digest


class BlobStore:
    """`BlobStore("/data/blobs")` or `BlobStore("s3://bucket/blobs")`; then `put_bytes`, `put_file`, `open`, `get`."""

    def __init__(self, url: str | os.PathLike[str], **storage_options: object) -> None:
        self.url = str(url)
        self.fs, root = fsspec.core.url_to_fs(self.url, **storage_options)
        self.root = root.rstrip("/") or "/"
        self.local = isinstance(self.fs, LocalFileSystem)
        self.fs.makedirs(self._join("tmp"), exist_ok=True)

    def __repr__(self) -> str:
        return f"BlobStore({self.url!r})"

    def _join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def path(self, digest: str) -> str:
        """Where the blob lives in the store's filesystem (a local path for a local store)."""
        check_digest(digest)
        return self._join(digest[:2], digest[2:4], digest)

    def local_path(self, digest: str) -> Path | None:
        """The blob's file on this machine (for sendfile-style responses), or None for a remote store."""
        return Path(self.path(digest)) if self.local else None

    def exists(self, digest: str) -> bool:
        return self.fs.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return int(self.fs.size(self.path(digest)))
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def put_stream(self, chunks: Iterable[bytes]) -> Blob:
        """Store the concatenated chunks, hashing while writing (one pass, constant memory)."""
        tmp = self._join("tmp", uuid.uuid4().hex)
        hasher = hashlib.sha256()
        size = 0
        try:
            with self.fs.open(tmp, "wb") as out:
                for chunk in chunks:
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = hasher.hexdigest()
            self._move_into_place(tmp, digest)
        except BaseException:
            self._remove_quietly(tmp)
            raise
        return Blob(digest, size)

    def put_bytes(self, data: bytes) -> Blob:
        return self.put_stream([bytes(data)])

    def put_file(self, path: str | os.PathLike[str]) -> Blob:
        """Store a local file's contents (streamed)."""

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as handle:
                while chunk := handle.read(CHUNK_SIZE):
                    yield chunk

        return self.put_stream(chunks())

    def open(self, digest: str) -> IO[bytes]:
        """A binary file object for reading; close it (or use `with`)."""
        try:
            return self.fs.open(self.path(digest), "rb")
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def get(self, digest: str) -> bytes:
        with self.open(digest) as handle:
            return handle.read()

    def iter_chunks(self, digest: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        with self.open(digest) as handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def _move_into_place(self, tmp: str, digest: str) -> None:
        final = self.path(digest)
        if self.fs.exists(final):
            # Same digest means same bytes: keep the existing blob, drop the copy.
            self._remove_quietly(tmp)
            return
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        if self.local:
            os.replace(tmp, final)  # atomic on one filesystem
        else:
            self.fs.mv(tmp, final)  # object stores: the object appears whole or not at all

    def _remove_quietly(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.rm(path)
