"""The platform service's FastAPI app: every feature's routes, under the service prefix, sharing one runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hub.db import make_engine, migrate
from hub.platform.features import FEATURES
from hub.platform.runtime import Feature, PlatformRuntime
from hub.request_limits import BodyLimits
from hub.service_app import ServiceApp, service_limits
from hub.settings import Settings


def platform_limits(settings: Settings) -> BodyLimits:
    """JSON requests get the services' limits; the upload routes stream and check their own (larger) ones."""
    uploads = (
        (r"/api/datanets/[^/]+/(rows|files)$", settings.datanets.max_upload_bytes),
        (r"/api/models/?$", settings.models.max_upload_bytes),
    )
    return service_limits(settings, uploads)


def create_app(settings: Settings, features: list[Feature] | None = None) -> FastAPI:
    features = FEATURES if features is None else features

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        runtime = PlatformRuntime(settings=settings, engine=make_engine(settings.database_url))
        migrate(runtime.engine)
        app.state.runtime = runtime
        started: list[Feature] = []
        try:
            for feature in features:
                if feature.startup is not None:
                    await feature.startup(runtime)
                started.append(feature)
            yield
        finally:
            for feature in reversed(started):
                if feature.shutdown is not None:
                    await feature.shutdown(runtime)
            runtime.engine.dispose()

    service = ServiceApp("platform", limits=platform_limits(settings), lifespan=lifespan)
    for feature in features:
        if feature.router is not None:
            service.router.include_router(feature.router)
    return service.finish()
