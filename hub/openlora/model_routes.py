"""The OpenLoRA routes about models rather than generation: OpenAI's model list and retrieval, deploying a model
(loading it without inference) and the admins' runtime adapter load / unload."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from hub.auth import HubUser, admin_user, current_user
from hub.openlora.attribution import InferenceAttribution
from hub.openlora.bodies import AdapterBody
from hub.openlora.charging import Metering
from hub.openlora.engine import OpenLoRAEngine
from hub.openlora.errors import ModelNotFoundError


def add_model_routes(
    router: APIRouter,
    engine: OpenLoRAEngine,
    metering: Metering,
    owned_by: str,
    attribution: InferenceAttribution | None,
) -> None:
    def described(m: dict[str, Any]) -> dict[str, Any]:
        """One model as OpenAI's Model object (id, object, created, owned_by), plus where it is and its price."""
        return {
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

    @router.get("/v1/models")
    async def list_models(_user: HubUser = Depends(current_user)) -> dict[str, Any]:
        return {"object": "list", "data": [described(m) for m in await run_in_threadpool(engine.list_models)]}

    @router.get("/v1/models/{model}")
    async def retrieve_model(model: str, _user: HubUser = Depends(current_user)) -> dict[str, Any]:
        """OpenAI's model retrieval: the same object as in the list. No side effects (nothing is loaded)."""
        engine.resolve_model(model)  # 404 for a model this server does not serve
        found = [m for m in await run_in_threadpool(engine.list_models) if m["id"] == model]
        if not found:  # served (resolvable) but not listed, e.g. unlisted between the two calls
            raise ModelNotFoundError(model)
        return described(found[0])

    @router.post("/v1/models/{model}/load")
    async def warm_model(model: str, _user: HubUser = Depends(current_user)) -> dict[str, Any]:
        """Deploy: load a served model now, so its first request does not wait. Free: no inference, no record."""
        info = {"object": "model", **await run_in_threadpool(engine.warm, model)}
        adapter_id = engine.resolve_model(model)
        if attribution is not None and adapter_id is not None:  # its null threshold calibrates in the background
            try:
                info["attribution"] = await run_in_threadpool(attribution.prepare, engine.store.path_for(adapter_id))
            except Exception as exc:  # a broken index must not fail the deploy; answers will say why
                info["attribution"] = f"unavailable: {exc}"
        return info

    @router.post("/v1/adapters/load")
    async def load_adapter(body: AdapterBody, _admin: HubUser = Depends(admin_user)) -> dict[str, Any]:
        info = await run_in_threadpool(engine.load_adapter, body.model, body.path)
        return {"object": "adapter", **info}

    @router.post("/v1/adapters/unload")
    async def unload_adapter(body: AdapterBody, _admin: HubUser = Depends(admin_user)) -> dict[str, Any]:
        info = await run_in_threadpool(engine.unload_adapter, body.model)
        return {"object": "adapter", **info}
