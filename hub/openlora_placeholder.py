"""Stand-in for the OpenLoRA service until its engine lands: /health says so and /v1/* answers 503."""

from fastapi import FastAPI, HTTPException

from hub.service_app import ServiceApp, serve
from hub.settings import load_settings

NOT_READY = "the OpenLoRA engine is not installed in this build yet"


def create_app() -> FastAPI:
    async def health() -> dict:
        return {"status": "unavailable", "reason": NOT_READY}

    service = ServiceApp("openlora", health=health)

    @service.router.api_route("/v1/{path:path}", methods=["GET", "POST"])
    async def not_ready(path: str) -> None:
        raise HTTPException(503, NOT_READY)

    return service.finish()


if __name__ == "__main__":
    serve(create_app(), load_settings().services.openlora_port)
