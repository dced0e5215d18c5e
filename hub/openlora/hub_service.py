"""The OpenLoRA managed service of the hub: `python -m hub.openlora.hub_service` (the hub starts it).

Serves the settings' base model and every listed published model (adapters and their attribution indexes
materialised from the blob store on first use), prices from the models registry, Proof of Attribution on every
adapter answer, and a reward record (fee split by those shares) per inference. Without a base model it still
answers: /health says what is missing and /v1/* answers 503, so the rest of the hub keeps working.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException

from hub.db import make_engine, migrate
from hub.models.catalog import ModelCatalog
from hub.openlora.api import create_app
from hub.openlora.attribution import InferenceAttribution
from hub.openlora.config import EngineConfig, serving_dtype
from hub.openlora.engine import OpenLoRAEngine
from hub.openlora.metering import PlatformMetering
from hub.service_app import ServiceApp, serve, service_limits
from hub.settings import Settings, load_settings
from openledger_sdk.catalog import resolve_base_model
from openledger_sdk.errors import OpenLedgerError


def unavailable_app(reason: str) -> FastAPI:
    async def health() -> dict:
        return {"status": "unavailable", "reason": reason}

    service = ServiceApp("openlora", health=health)

    @service.router.api_route("/v1/{path:path}", methods=["GET", "POST"])
    async def not_ready(path: str) -> None:
        raise HTTPException(503, reason)

    return service.finish()


def build_app(settings: Settings) -> FastAPI:
    try:
        model_dir = resolve_base_model(settings.models.base_model, settings.data_dir / "models")
    except OpenLedgerError as err:
        return unavailable_app(f"no base model: {err}")
    sql = make_engine(settings.database_url)
    migrate(sql)
    catalog = ModelCatalog.from_settings(settings, sql)
    engine = OpenLoRAEngine(
        model_dir,
        resolve_adapter_path=catalog.resolver(),
        list_adapters=lambda: sorted(catalog.prices()),
        config=EngineConfig(
            device=settings.models.serve_device,
            dtype=serving_dtype(settings.models.serve_device, settings.models.serve_dtype),
        ),
        model_name=settings.models.base_model if "/" not in settings.models.base_model else model_dir.name,
    )
    attribution = InferenceAttribution(model_dir, engine.tokenizer)
    limits = service_limits(settings)
    app = create_app(engine, metering=PlatformMetering(settings, sql), attribution=attribution, limits=limits)
    app.router.on_shutdown.append(engine.close)
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    serve(build_app(settings), settings.services.openlora_port)
