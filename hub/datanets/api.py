"""Datanet routes under `/services/platform/api/datanets`, and the platform `Feature` that starts the service.

Uploads are checked before their body is read: the caller's access, the file name, and the Content-Length against
the limit (a 2 GB claim is refused at once with 413); the body is then streamed to a temporary file with the limit
enforced again for chunked requests that send no length (hub.platform.transfers).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool

from hub.auth import CurrentUser, HubUser
from hub.datanets import config
from hub.datanets.chain import RegistryWriter, wallet_addresses
from hub.datanets.parsing import FileRejected, file_format, loads_strict, safe_filename
from hub.datanets.service import DatanetError, DatanetService
from hub.datanets.spec import DatanetSpec, MembersSpec, Review
from hub.input_rules import SqlId, VersionRef
from hub.keys.store import WalletKeyStore
from hub.platform.idempotency import idempotent
from hub.platform.relay_writes import start_chain_sync, stop_chain_sync
from hub.platform.runtime import Feature, PlatformRuntime, get_runtime
from hub.platform.service_calls import run_service
from hub.platform.transfers import blob_response, check_declared, shared_blob_store, stream_to, sweep_spooled

log = logging.getLogger("hub.datanets")
router = APIRouter(prefix="/api/datanets", tags=["datanets"])
SPLIT_HINT = ": split it"
CHAIN_SYNC = "datanets_chain_sync"  # the runtime.extras key of the catch-up task


def get_service(runtime: PlatformRuntime = Depends(get_runtime)) -> DatanetService:
    return runtime.extras["datanets"]


Service = Annotated[DatanetService, Depends(get_service)]
# Blocking service code runs off the event loop; its DatanetError becomes the HTTP answer.
_run = partial(run_service, DatanetError)


def _check_declared(request: Request, what: str) -> int | None:
    return check_declared(request, what, config.settings.max_upload_bytes, SPLIT_HINT)


async def _stream_to(request: Request, sink: Callable[[bytes], Any], what: str) -> int:
    return await stream_to(request, sink, what, config.settings.max_upload_bytes, SPLIT_HINT)


@router.post("", status_code=201)
async def create_datanet(spec: DatanetSpec, user: CurrentUser, service: Service) -> dict:
    return await _run(service.create, user, spec)


@router.get("")
async def search_datanets(
    user: CurrentUser,
    service: Service,
    q: str = Query("", max_length=200),
    tags: str = Query("", description="comma-separated; a datanet must have all of them"),
    mine: bool = False,
) -> list[dict]:
    return await _run(service.search, user, q, [t for t in tags.split(",") if t], mine)


@router.get("/{name}")
async def get_datanet(name: str, user: CurrentUser, service: Service) -> dict:
    return await _run(service.get, user, name)


@router.put("/{name}/members")
async def set_members(name: str, spec: MembersSpec, user: CurrentUser, service: Service) -> dict:
    return await _run(service.set_members, user, name, spec)


@router.post("/{name}/rows", status_code=201)
async def contribute_rows(name: str, request: Request, user: CurrentUser, service: Service) -> dict:
    """Body: `{"rows": [{...}, ...]}`. One call is one submission; any bad row refuses all of them (422).
    With an `Idempotency-Key`, a retry returns the first answer instead of a duplicate refusal."""
    return await idempotent(request, user, lambda: _contribute_rows(name, request, user, service), 201)


async def _contribute_rows(name: str, request: Request, user: HubUser, service: DatanetService) -> dict:
    await _run(service.check_contributor, user, name)  # 404/403 before reading the body
    _check_declared(request, "the request")
    parts: list[bytes] = []
    await _stream_to(request, parts.append, "the request")
    try:
        body = loads_strict(b"".join(parts).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise HTTPException(400, f"the body is not valid UTF-8 JSON: {err}") from None
    rows = body.get("rows") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise HTTPException(400, 'send {"rows": [{...}, ...]}')
    return await _run(service.contribute_rows, user, name, rows)


@router.post("/{name}/files", status_code=201)
async def contribute_file(
    name: str,
    request: Request,
    user: CurrentUser,
    service: Service,
    filename: str = Query(..., max_length=1000, description="the file's name; its extension picks the format"),
) -> dict:
    """Body: the raw file (JSONL, JSON array, CSV, Parquet, .txt or .md). Refused before reading when too large.
    With an `Idempotency-Key`, a retry returns the first answer instead of a duplicate refusal."""
    return await idempotent(request, user, lambda: _contribute_file(name, request, user, service, filename), 201)


async def _contribute_file(name: str, request: Request, user: HubUser, service: DatanetService, filename: str) -> dict:
    await _run(service.check_contributor, user, name)
    try:
        safe = safe_filename(filename)
        file_format(safe)
    except FileRejected as err:
        raise HTTPException(err.status, str(err)) from None
    length = _check_declared(request, safe)
    if length == 0:
        raise HTTPException(400, f"{safe} is empty (0 bytes): nothing to contribute")
    directory = service.upload_dir
    directory.mkdir(parents=True, exist_ok=True)
    # A random name in the platform's own temp dir: the uploaded name never becomes a path.
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix="upload-", delete=False)  # noqa: SIM115
    path = Path(handle.name)
    try:
        with handle:
            size = await _stream_to(request, handle.write, safe)
        if size == 0:
            raise HTTPException(400, f"{safe} is empty (0 bytes): nothing to contribute")
        return await _run(service.contribute_file, user, name, path, safe)
    finally:
        path.unlink(missing_ok=True)


@router.get("/{name}/submissions")
async def list_submissions(
    name: str, user: CurrentUser, service: Service, status: str | None = None, mine: bool = False
) -> list[dict]:
    return await _run(service.submissions, user, name, status, mine)


@router.get("/{name}/submissions/{submission_id}")
async def get_submission(name: str, submission_id: SqlId, user: CurrentUser, service: Service) -> dict:
    return await _run(service.submission, user, name, submission_id)


@router.get("/{name}/submissions/{submission_id}/rows")
async def submission_rows(
    name: str,
    submission_id: SqlId,
    user: CurrentUser,
    service: Service,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10**9),
) -> list[dict]:
    return await _run(service.submission_rows, user, name, submission_id, limit, offset)


@router.post("/{name}/submissions/{submission_id}/approve")
async def approve(
    name: str, submission_id: SqlId, user: CurrentUser, service: Service, review: Review | None = None
) -> dict:
    return await _run(service.review, user, name, submission_id, True, (review or Review()).reason)


@router.post("/{name}/submissions/{submission_id}/reject")
async def reject(name: str, submission_id: SqlId, review: Review, user: CurrentUser, service: Service) -> dict:
    return await _run(service.review, user, name, submission_id, False, review.reason)


@router.post("/{name}/versions", status_code=201)
async def publish(name: str, request: Request, user: CurrentUser, service: Service) -> dict:
    return await idempotent(request, user, lambda: _run(service.publish, user, name), 201)


@router.get("/{name}/versions")
async def list_versions(name: str, user: CurrentUser, service: Service) -> list[dict]:
    return await _run(service.versions, user, name)


@router.get("/{name}/versions/{version}")
async def get_version(name: str, version: VersionRef, user: CurrentUser, service: Service) -> dict:
    return await _run(service.version, user, name, version)


@router.get("/{name}/versions/{version}/snapshot")
async def download_snapshot(name: str, version: VersionRef, user: CurrentUser, service: Service) -> Any:
    digest, download_name = await _run(service.snapshot_digest, user, name, version)
    return blob_response(service.blobs, digest, "application/vnd.apache.parquet", download_name)


@router.get("/{name}/versions/{version}/rows/{row_id}/proof")
async def row_proof(name: str, version: VersionRef, row_id: SqlId, user: CurrentUser, service: Service) -> dict:
    return await _run(service.proof, user, name, version, row_id)


async def startup(runtime: PlatformRuntime) -> None:
    config.configure(runtime.settings.datanets)
    blobs = shared_blob_store(runtime)
    store = WalletKeyStore.for_data_dir(runtime.settings.data_dir)
    service = DatanetService(
        runtime.engine,
        blobs,
        wallet_addresses(runtime.engine, store),
        RegistryWriter(runtime),
        upload_dir=runtime.settings.data_dir / "tmp" / "uploads",
    )
    removed = sweep_spooled(service.upload_dir)  # uploads of requests that died with a previous platform
    if removed:
        log.info("removed %d spooled upload(s) left by requests that did not finish", removed)
    await run_in_threadpool(service.rebuild_indexes)
    runtime.extras["datanets"] = service
    start_chain_sync(runtime, CHAIN_SYNC, service.sync_chain, log, "datanets")
    if config.settings.seed_demo:
        from hub.datanets.demo_data import seed_demo_datanet

        result = await run_in_threadpool(seed_demo_datanet, runtime)
        log.info("demo datanet: %s", json.dumps(result)[:300])


async def shutdown(runtime: PlatformRuntime) -> None:
    await stop_chain_sync(runtime, CHAIN_SYNC)


feature = Feature(name="datanets", router=router, startup=startup, shutdown=shutdown)
