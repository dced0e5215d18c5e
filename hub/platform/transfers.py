"""Request bodies in and blobs out, shared by the features that take uploads (datanets, models).

Uploads are checked before their body is read: Content-Length against the limit (a 2 GB claim is refused at once
with 413); the body is then read with the limit enforced again, for chunked requests that send no length.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, StreamingResponse

from hub.blobs import BlobStore
from hub.platform.runtime import PlatformRuntime


def shared_blob_store(runtime: PlatformRuntime) -> BlobStore:
    """The platform's one blob store (`runtime.extras["blobs"]`), made from the settings by the first feature asking."""
    blobs = runtime.extras.get("blobs")
    if blobs is None:
        blobs = runtime.extras["blobs"] = BlobStore(runtime.settings.blobs_url)
    return blobs


def declared_length(request: Request) -> int | None:
    """The request's Content-Length, None when it sends none (chunked); 400 when it is not a number."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise HTTPException(400, f"Content-Length {value[:40]!r} is not a number") from None


def check_declared(request: Request, what: str, limit: int, hint: str = "") -> int | None:
    """413 before reading anything when the declared length is over `limit`; returns the declared length."""
    length = declared_length(request)
    if length is not None and length > limit:
        raise HTTPException(413, f"{what} is {length} bytes; the limit is {limit} bytes per upload{hint}")
    return length


async def limited_chunks(request: Request, what: str, limit: int, hint: str = "") -> AsyncIterator[bytes]:
    """The body's chunks; 413 as soon as more than `limit` bytes arrived (whatever Content-Length said)."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"{what} is over the limit of {limit} bytes per upload{hint}")
        yield chunk


async def stream_to(request: Request, sink: Callable[[bytes], Any], what: str, limit: int, hint: str = "") -> int:
    """Feed the body to `sink` chunk by chunk within the limit; returns the byte count."""
    size = 0
    async for chunk in limited_chunks(request, what, limit, hint):
        size += len(chunk)
        sink(chunk)
    return size


def blob_response(blobs: BlobStore, digest: str, media_type: str, filename: str) -> FileResponse | StreamingResponse:
    """A download of one blob: sendfile for a local store, streamed from a remote one; ETag = the digest."""
    headers = {"ETag": f'"{digest}"', "X-Content-SHA256": digest}
    local = blobs.local_path(digest)
    if local is not None:
        return FileResponse(local, media_type=media_type, filename=filename, headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return StreamingResponse(blobs.iter_chunks(digest), media_type=media_type, headers=headers)


def sweep_spooled(directory: Path, older_than_s: float = 900) -> int:
    """Remove spooled uploads (`upload-*`) that no request writes any more: a platform that crashed mid-upload left
    them. Called at start; the age guard spares a replica's upload in progress on a shared data dir."""
    if not directory.is_dir():
        return 0
    cutoff, removed = time.time() - older_than_s, 0
    for path in directory.glob("upload-*"):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed
