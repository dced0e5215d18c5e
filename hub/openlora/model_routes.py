"""The OpenLoRA routes about models rather than generation: OpenAI's model list and retrieval, deploying a model
(loading it without inference) and the admins' runtime adapter load / unload."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from hub.auth import HubUser, admin_user, current_user
from hub.openlora.bodies import AdapterBody
from hub.openlora.charging import Metering
from hub.openlora.engine import OpenLoRAEngine


def add_model_routes(router: APIRouter, engine: OpenLoRAEngine, metering: Metering, owned_by: str) -> None:
    @router.get("/v1/models")
    async def list_models(_user: HubUser = Depends(current_user)) -> dict[str, Any]:
        data = [
            {
                "id": m["id"],
                "object": "model",
                "created": engine.created,
                "owned_by": owned_by,
                "root": engine.base_model_id,
                "parent": m["parent"],
                "max_model_len": m["max_model_len"],
                "tier": m["tier"],
                "price_per_1k_tokens": metering.price_per_1k(m["id"]),
            }
            for m in await run_in_threadpool(engine.list_models)
        ]
        return {"object": "list", "data": data}

    @router.get("/v1/models/{model}")
    async def retrieve_model(model: str, _user: HubUser = Depends(current_user)) -> dict[str, Any]:
        """OpenAI's model retrieval; ours also says where the model is (`tier`). No side effects."""
        engine.resolve_model(model)  # 404 for a model this server does not serve
        found = next(m for m in await run_in_threadpool(engine.list_models) if m["id"] == model)
        return {"id": model, "object": "model", "owned_by": owned_by, **found}

    @router.post("/v1/models/{model}/load")
    async def warm_model(model: str, _user: HubUser = Depends(current_user)) -> dict[str, Any]:
        """Deploy: load a served model now, so its first request does not wait. Free: no inference, no record."""
        return {"object": "model", **await run_in_threadpool(engine.warm, model)}

    @router.post("/v1/adapters/load")
    async def load_adapter(body: AdapterBody, _admin: HubUser = Depends(admin_user)) -> dict[str, Any]:
        info = await run_in_threadpool(engine.load_adapter, body.model, body.path)
        return {"object": "adapter", **info}

    @router.post("/v1/adapters/unload")
    async def unload_adapter(body: AdapterBody, _admin: HubUser = Depends(admin_user)) -> dict[str, Any]:
        info = await run_in_threadpool(engine.unload_adapter, body.model)
        return {"object": "adapter", **info}
