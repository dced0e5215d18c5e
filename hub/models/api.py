"""Model routes under `/services/platform/api/models`, and the platform `Feature` that starts the service.

Publish is one multipart/form-data request, as `openledger_sdk.modelfactory.publish` sends it: the fields `name`,
`price_per_1k_tokens` (decimal OPEN) and optionally `manifest_hash`, and one part named `files` per file, named by
its file name (manifest.json, adapter_model.safetensors, adapter_config.json and the attribution index files). The
Content-Length is checked before the body is read and the limit enforced again while it streams; parts are spooled
to temporary files, checked, stored in the blob store, and only then is anything written to SQL.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from hub.auth import CurrentUser, HubUser
from hub.datanets.chain import wallet_addresses
from hub.datanets.service import DatanetError
from hub.keys.store import WalletKeyStore
from hub.models import config
from hub.models.bases import BaseCatalog
from hub.models.chain import ModelRegistryWriter
from hub.models.errors import ModelError
from hub.models.service import Actor, DatanetRoots, ModelService, models_progress
from hub.models.validation import FILE_PATTERN, Upload
from hub.platform.idempotency import idempotent
from hub.platform.progress import PROGRESS_PROVIDERS
from hub.platform.relay_writes import start_chain_sync, stop_chain_sync
from hub.platform.runtime import Feature, PlatformRuntime, get_runtime
from hub.platform.service_calls import run_service
from hub.platform.transfers import blob_response, check_declared, limited_chunks, shared_blob_store

log = logging.getLogger("hub.models")
router = APIRouter(prefix="/api/models", tags=["models"])
CHAIN_SYNC = "models_chain_sync"  # the runtime.extras key of the catch-up task
UPLOAD = "the model upload"


def get_service(runtime: PlatformRuntime = Depends(get_runtime)) -> ModelService:
    return runtime.extras["models"]


Service = Annotated[ModelService, Depends(get_service)]
# Blocking service code runs off the event loop; its ModelError becomes the HTTP answer.
_run = partial(run_service, ModelError)


async def _read_form(request: Request, limit: int) -> FormData:
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise HTTPException(415, "send the model as multipart/form-data (what ol.models.publish sends)")
    parser = MultiPartParser(
        request.headers,
        limited_chunks(request, UPLOAD, limit),
        max_files=config.MAX_FILES,
        max_fields=8,
        max_part_size=config.MAX_FIELD_BYTES,
    )
    try:
        return await parser.parse()
    except MultiPartException as err:
        raise HTTPException(400, f"the multipart body is malformed: {err.message}") from None


def _split(form: FormData) -> tuple[dict[str, str], dict[str, Upload]]:
    """Plain fields, and the `files` parts by file name, hashed (blocking: run in a thread)."""
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            filename = value.filename or ""
            if key != "files":
                raise ModelError(400, f"file part {key!r}: send every file as a part named 'files'")
            if not FILE_PATTERN.match(filename):
                raise ModelError(400, f"file name {filename[:80]!r} is not a plain file name like adapter_config.json")
            if filename in files:
                raise ModelError(400, f"{filename} was sent twice")
            files[filename] = Upload.hashed(filename, value.file)
        elif key in fields:
            raise ModelError(400, f"the form field {key!r} was sent twice")
        else:
            fields[key] = value
    for required in ("name", "price_per_1k_tokens"):
        if required not in fields:
            raise ModelError(400, f"send the form field {required!r}")
    return fields, files


def _publish(service: ModelService, user: HubUser, form: FormData) -> dict:
    fields, files = _split(form)
    return service.publish(user, fields["name"], fields["price_per_1k_tokens"], files, fields.get("manifest_hash"))


@router.post("", status_code=201)
async def publish_model(
    request: Request, user: CurrentUser, service: Service, runtime: PlatformRuntime = Depends(get_runtime)
) -> dict:
    """Publish a complete ModelFactory model; refused before the body is read when too large or not a user.
    An `Idempotency-Key` makes a retry return the first answer (hub.platform.idempotency)."""
    return await idempotent(request, user, lambda: _publish_upload(request, user, service, runtime), 201)


async def _publish_upload(request: Request, user: HubUser, service: ModelService, runtime: PlatformRuntime) -> dict:
    await _run(service.check_publisher, user)
    limit = config.max_upload_bytes(runtime.settings)
    check_declared(request, UPLOAD, limit)
    form = await _read_form(request, limit)
    try:
        return await _run(_publish, service, user, form)
    finally:
        await form.close()


@router.get("")
async def list_models(
    user: CurrentUser,
    service: Service,
    owner: str | None = Query(None, max_length=255),
    base: str | None = Query(None, max_length=255, description="base model name"),
    mine: bool = False,
) -> list[dict]:
    """Listed models, newest first."""
    return await _run(service.search, user, owner, base, mine)


@router.get("/{name}")
async def get_model(name: str, user: CurrentUser, service: Service) -> dict:
    """One model by name (or id): record, manifest, file digests, price and on-chain status."""
    return await _run(service.get, user, name)


@router.get("/{name}/files/{filename}")
async def download_file(name: str, filename: str, user: CurrentUser, service: Service) -> Any:
    """One of the model's files; users and services (OpenLoRA replicas fetch adapters this way)."""
    digest, media_type = await _run(service.file, user, name, filename)
    return blob_response(service.blobs, digest, media_type, filename)


class PriceChange(BaseModel):
    price_per_1k_tokens: str | int | float


@router.patch("/{name}")
async def change_price(name: str, body: PriceChange, user: CurrentUser, service: Service) -> dict:
    """The owner sets a new price per 1k tokens (decimal OPEN); it goes on-chain through the relay."""
    return await _run(service.set_price, user, name, str(body.price_per_1k_tokens))


@router.delete("/{name}")
async def unlist_model(name: str, user: CurrentUser, service: Service) -> dict:
    """Unlist (owner or admin): gone from the catalog and OpenLoRA; the on-chain record stays."""
    return await _run(service.unlist, user, name)


def datanet_roots(runtime: PlatformRuntime) -> DatanetRoots:
    """Version roots from the datanets feature, with its access rules (a private datanet is not found)."""

    def root(actor: Actor, name: str, version: int) -> str:
        datanets = runtime.extras.get("datanets")
        if datanets is None:
            raise ModelError(503, "the datanets feature is not running, so the training data cannot be checked")
        try:
            return datanets.version(actor, name, version)["merkle_root"]
        except DatanetError as err:
            raise ModelError(422, f"the manifest names datanet {name!r} version {version}: {err}") from None

    return root


async def startup(runtime: PlatformRuntime) -> None:
    settings = runtime.settings
    service = ModelService(
        runtime.engine,
        shared_blob_store(runtime),
        wallet_addresses(runtime.engine, WalletKeyStore.for_data_dir(settings.data_dir)),
        ModelRegistryWriter(runtime),
        BaseCatalog(settings.data_dir / "models"),
        datanet_roots(runtime),
    )
    runtime.extras["models"] = service
    start_chain_sync(runtime, CHAIN_SYNC, service.sync_chain, log, "models")


async def shutdown(runtime: PlatformRuntime) -> None:
    await stop_chain_sync(runtime, CHAIN_SYNC)


if models_progress not in PROGRESS_PROVIDERS:
    PROGRESS_PROVIDERS.append(models_progress)

feature = Feature(name="models", router=router, startup=startup, shutdown=shutdown)
