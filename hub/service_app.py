"""What every FastAPI service of the hub shares: the URL prefix the proxy routes, bounded request bodies, /health and
/metrics (behind the `read:metrics` scope)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from hub.auth import metrics_reader
from hub.lifecycle import die_with_parent
from hub.recursion import DEFAULT_LIMIT
from hub.request_limits import BodyLimits, install

if TYPE_CHECKING:
    from hub.settings import Settings

HealthCheck = Callable[[], Awaitable[dict]]


def service_limits(settings: Settings | None, uploads: tuple[tuple[str, int], ...] = ()) -> BodyLimits:
    """The body limits of `[services]` in the settings (`max_body_bytes`, `max_json_depth`), or the defaults."""
    if settings is None:
        return BodyLimits(uploads=uploads)
    return BodyLimits(settings.services.max_body_bytes, settings.services.max_json_depth, uploads)


def service_prefix(name: str) -> str:
    """The path the hub's proxy forwards unchanged to this service, e.g. `/services/platform/`."""
    return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{name}/")


class ServiceApp:
    """A FastAPI app mounted under the service prefix, with request metrics and a health endpoint.

    Routes are added to `router` (paths relative to the prefix); call `finish()` once all are added.
    """

    def __init__(
        self,
        name: str,
        health: HealthCheck | None = None,
        limits: BodyLimits | None = None,
        settings: Settings | None = None,
        **fastapi_kwargs: object,
    ) -> None:
        self.name = name
        self.prefix = service_prefix(name).rstrip("/")
        self.registry = CollectorRegistry()
        self.app = FastAPI(
            title=f"OpenLedger {name}",
            docs_url=f"{self.prefix}/docs",
            openapi_url=f"{self.prefix}/openapi.json",
            **fastapi_kwargs,
        )
        self.router = APIRouter()
        self._health = health
        self._requests = Counter(
            "http_requests", "HTTP requests handled", ["method", "route", "status"], registry=self.registry
        )
        self._latency = Histogram("http_request_seconds", "HTTP request latency", ["route"], registry=self.registry)
        # Inside the metrics middleware (so refusals are counted), before anything that reads a body.
        install(self.app, limits or service_limits(settings))
        self.app.middleware("http")(self._observe)
        self.router.add_api_route("/health", self._health_endpoint, methods=["GET"])
        self.router.add_api_route(
            "/metrics", self._metrics_endpoint, methods=["GET"], dependencies=[Depends(metrics_reader)]
        )

    def finish(self) -> FastAPI:
        self.app.include_router(self.router, prefix=self.prefix)
        return self.app

    async def _observe(self, request: Request, call_next: Callable) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # The route template, not the raw path, keeps label cardinality bounded.
        label = getattr(route, "path", "unmatched")
        self._requests.labels(request.method, label, str(response.status_code)).inc()
        self._latency.labels(label).observe(time.perf_counter() - started)
        return response

    async def _health_endpoint(self, response: Response) -> dict:
        status = {"service": self.name, "status": "ok"}
        if self._health is not None:
            status |= await self._health()
        if status.get("status") != "ok":
            response.status_code = 503
        return status

    async def _metrics_endpoint(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def serve(app: FastAPI, port: int) -> None:
    """Run a service on loopback: the hub's proxy is its only public door. It stops when the hub dies."""
    import uvicorn

    die_with_parent()
    if sys.getrecursionlimit() > DEFAULT_LIMIT:  # some import raised it (see hub.recursion): nested JSON would segfault
        sys.setrecursionlimit(DEFAULT_LIMIT)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")
