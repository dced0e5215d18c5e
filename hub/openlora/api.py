"""OpenAI-compatible HTTP API over an `OpenLoRAEngine` (a JupyterHub managed service, hub-token auth).

`model` is an adapter id or the base model's id. Responses carry OpenAI's `usage` plus two fields of ours:
`price` (OPEN charged, from the model's price per 1k tokens and the platform fee) and `attribution` (for an
adapter: the training rows and contributor shares behind the answer, see `hub.openlora.attribution`; null for the
base model or when the request says `"attribution": false`). Errors use OpenAI's `{"error": {...}}` shape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.auth import HubUser, current_user, metrics_reader
from hub.openlora.attribution import InferenceAttribution, merge_attributions, record_examples, unavailable
from hub.openlora.bodies import (
    HTTP_ERROR_CODES,
    ChatBody,
    CompletionBody,
    GenerationBody,
    error_body,
    most_specific,
    openai_param,
    validation_message,
)
from hub.openlora.charging import FinishedInference, FlatMetering, Metering, PriceTable
from hub.openlora.engine import OpenLoRAEngine
from hub.openlora.errors import EngineError, InvalidRequestError
from hub.openlora.logprobs_format import TokenTexts, chat_logprobs, completion_logprobs
from hub.openlora.model_routes import add_model_routes
from hub.openlora.request import Completion, RequestHandle, StreamEvent
from hub.openlora.request_id import RequestIdMiddleware
from hub.openlora.sampling import SamplingParams
from hub.openlora.structured.chat import ChatStructure, prepare_chat
from hub.openlora.token_logprobs import TokenLogprob
from hub.request_limits import BodyLimits, install

log = logging.getLogger(__name__)


def _engine_error_response(exc: EngineError) -> JSONResponse:
    body = error_body(str(exc), exc.error_type, exc.code, exc.param)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def _sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n"


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _result_unless_disconnected(request: Request, handle: RequestHandle) -> Completion:
    """Wait for the result; if the client goes away first, cancel the request (frees its KV row and slot)."""
    task = asyncio.ensure_future(handle.aresult())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await request.is_disconnected():
                handle.cancel()
                return await task  # raises RequestCancelledError
    finally:
        if not task.done():
            handle.cancel()
            task.cancel()


# -- the app ----------------------------------------------------------------------------------------------------
def create_app(
    engine: OpenLoRAEngine,
    *,
    price_per_1k: PriceTable | None = None,
    metering: Metering | None = None,
    attribution: InferenceAttribution | None = None,
    service_prefix: str | None = None,
    owned_by: str = "openledger",
    limits: BodyLimits | None = None,
) -> FastAPI:
    """The FastAPI app. Routes are served at `/` and under the hub's service prefix (the proxy keeps it).

    `attribution`: Proof of Attribution for adapter requests (None: the `attribution` field says it is off)."""
    metering = metering or FlatMetering(price_per_1k or (lambda _model: 0.0))
    token_texts = TokenTexts(engine.tokenizer)

    async def authorize(user: HubUser, model: str, prompts: list[list[int]], params: SamplingParams, rid: str) -> None:
        """Before any generation: reserve what these prompts may cost at their longest answers (or refuse)."""
        prompt_tokens = sum(len(ids) for ids in prompts)
        most = sum(params.max_tokens or max(engine.max_seq_len - len(ids), 0) for ids in prompts)
        await run_in_threadpool(metering.authorize, user.name, model, prompt_tokens, most, rid)

    async def attribute(body: GenerationBody, answers: list[tuple[list[int], list[int]]]) -> dict[str, Any] | None:
        """The response's `attribution` object for (prompt ids, answer ids) pairs; None when not asked for."""
        adapter_id = engine.resolve_model(body.model)
        if adapter_id is None or not body.attribution:
            return None  # the base model has no contributors to credit
        if attribution is None:
            return unavailable("attribution is not enabled on this server")
        adapter_dir = engine.store.path_for(adapter_id)

        def score(prompt_ids: list[int], output_ids: list[int]) -> dict[str, Any]:
            try:
                return attribution.attribute(adapter_dir, prompt_ids, output_ids)
            except Exception as exc:  # never lose the answer or its charge over attribution
                log.exception("attribution failed for %s", adapter_id)
                return unavailable(f"attribution failed: {exc}")

        documents = [await run_in_threadpool(score, p, o) for p, o in answers]
        return merge_attributions(documents, [len(o) for _, o in answers], attribution.config.top_k)

    async def charge(
        user: HubUser,
        request_id: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        attributed: dict[str, Any] | None,
    ) -> object:
        """The price of a finished request; the hub's metering also records it (and its shares) for settlement."""
        credited = attributed or {}
        inference = FinishedInference(
            payer=user.name,
            request_id=request_id,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            shares=credited.get("shares") if credited.get("attributed") else None,
            top_examples=record_examples(credited),  # or why there are none (e.g. pending calibration)
        )
        charged = await run_in_threadpool(metering.record, inference)
        return charged["price"]

    prefix = (service_prefix if service_prefix is not None else os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "")).rstrip(
        "/"
    )
    # The schema lists the paths the hub's proxy reaches (under the prefix), where clients and the fuzzer find it.
    app = FastAPI(title="OpenLoRA", version="0.1.0", openapi_url=f"{prefix}/openapi.json", docs_url=f"{prefix}/docs")
    app.state.engine = engine
    install(
        app,
        limits or BodyLimits(),
        lambda status, message: error_body(message, "invalid_request_error", HTTP_ERROR_CODES.get(status)),
    )

    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(EngineError)
    async def _engine_error(_request: Request, exc: EngineError) -> JSONResponse:
        return _engine_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(exc.status_code)
        body = error_body(str(exc.detail), type_ or "invalid_request_error", HTTP_ERROR_CODES.get(exc.status_code))
        body["detail"] = exc.detail  # FastAPI's usual field, for non-OpenAI clients
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = most_specific(list(exc.errors()))
        param = openai_param(first.get("loc", ()))
        message = validation_message(first, param)
        return JSONResponse(error_body(message, "invalid_request_error", "invalid_value", param), status_code=400)

    router = APIRouter()

    @router.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok" if engine.scheduler.alive else "stopped",
            "model": engine.base_model_id,
            "device": engine.config.device,
            "dtype": engine.config.dtype,
            "waiting": engine.scheduler.waiting_count,
            "running": len(engine.scheduler.running),
        }

    @router.get("/metrics", dependencies=[Depends(metrics_reader)])
    async def metrics() -> Response:
        return Response(engine.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    add_model_routes(router, engine, metering, owned_by, attribution)

    @router.post("/v1/completions")
    async def completions(body: CompletionBody, request: Request, user: HubUser = Depends(current_user)):
        if body.echo:
            raise InvalidRequestError(
                "echo is not supported by this server", code="unsupported_parameter", param="echo"
            )
        params = body.sampling(body.max_tokens)
        prompts: list[str | list[int]]
        if isinstance(body.prompt, list) and body.prompt and all(isinstance(p, str) for p in body.prompt):
            prompts = list(body.prompt)
        else:
            prompts = [body.prompt]  # a string or one list of token ids
        if body.stream and len(prompts) != 1:
            raise InvalidRequestError("streaming supports a single prompt", param="prompt")
        engine.resolve_model(body.model)  # 404 before any tokenising work
        encoded = [await run_in_threadpool(engine.encode, p) for p in prompts]
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        await authorize(user, body.model, encoded, params, rid)
        streaming = False
        try:
            handles = [engine.submit(body.model, ids, params) for ids in encoded]
            if body.stream:
                streaming = True  # the stream releases or consumes the reservation
                return _stream(handles[0], encoded[0], body, rid, created, user, chat=None)
            try:
                results = [await _result_unless_disconnected(request, h) for h in handles]
            finally:
                for h in handles:
                    h.cancel()
            prompt_tokens = sum(r.prompt_tokens for r in results)
            completion_tokens = sum(r.completion_tokens for r in results)
            attributed = await attribute(body, [(ids, r.token_ids) for ids, r in zip(encoded, results, strict=True)])
            price = await charge(user, rid, body.model, prompt_tokens, completion_tokens, attributed)
        finally:
            if not streaming:  # failed or cancelled: all of it back; after the charge a no-op (the record took it)
                await run_in_threadpool(metering.release, rid)
        counted = usage(prompt_tokens, completion_tokens)
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": i,
                    "text": r.text,
                    "logprobs": None if r.logprobs is None else completion_logprobs(r.logprobs, token_texts)[0],
                    "finish_reason": r.finish_reason,
                }
                for i, r in enumerate(results)
            ],
            "usage": counted,
            "price": price,
            "attribution": attributed,
        }

    @router.post("/v1/chat/completions")
    async def chat_completions(body: ChatBody, request: Request, user: HubUser = Depends(current_user)):
        params = body.sampling(body.max_completion_tokens or body.max_tokens)
        engine.resolve_model(body.model)  # 404 before any tokenising work
        messages, structure = await run_in_threadpool(prepare_chat, body, engine)  # tools, response_format
        params = dataclasses.replace(params, grammar=structure.grammar)
        prompt_ids = await run_in_threadpool(engine.chat_prompt_ids, messages)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        await authorize(user, body.model, [prompt_ids], params, rid)
        streaming = False
        try:
            handle = engine.submit(body.model, prompt_ids, params)
            if body.stream:
                streaming = True
                return _stream(handle, prompt_ids, body, rid, created, user, chat=structure)
            result = await _result_unless_disconnected(request, handle)
            attributed = await attribute(body, [(prompt_ids, result.token_ids)])
            price = await charge(user, rid, body.model, result.prompt_tokens, result.completion_tokens, attributed)
        finally:
            if not streaming:
                await run_in_threadpool(metering.release, rid)
        counted = usage(result.prompt_tokens, result.completion_tokens)
        message, finish_reason = structure.message(result.text, result.finish_reason)
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None if result.logprobs is None else chat_logprobs(result.logprobs, token_texts),
                    "finish_reason": finish_reason,
                }
            ],
            "usage": counted,
            "price": price,
            "attribution": attributed,
        }

    def _stream(
        handle: RequestHandle,
        prompt_ids: list[int],
        body: GenerationBody,
        rid: str,
        created: int,
        user: HubUser,
        *,
        chat: ChatStructure | None,
    ) -> StreamingResponse:
        """SSE chunks; `chat` (the answer's structure) for chat completions, None for completions."""
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        obj = "chat.completion.chunk" if chat else "text_completion"
        with_logprobs = body.top_logprobs_wanted() is not None
        pending: list[TokenLogprob] = []  # logprobs of tokens whose text has not been sent yet (held back)
        text_offset = 0

        def chunk_logprobs() -> dict[str, Any] | None:
            """The logprobs of the tokens since the last chunk, in this chunk (OpenAI's streaming shape)."""
            nonlocal text_offset
            if not with_logprobs:
                return None
            entries = list(pending)
            pending.clear()
            if chat:
                return chat_logprobs(entries, token_texts)
            shaped, text_offset = completion_logprobs(entries, token_texts, text_offset)
            return shaped

        deltas = chat.stream() if chat else None

        def chunk(
            text: str | None, finish: str | None, first: bool = False, delta: dict | None = None
        ) -> dict[str, Any]:
            logprobs = None if first else chunk_logprobs()
            if chat:
                delta = delta or ({"role": "assistant", "content": ""} if first else {})
                choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "logprobs": logprobs, "finish_reason": finish}
            return {"id": rid, "object": obj, "created": created, "model": body.model, "choices": [choice]}

        async def events() -> AsyncIterator[str]:
            last: StreamEvent | None = None
            price: object = 0  # charged once the request finishes; a cancelled stream is not charged
            attributed: dict[str, Any] | None = None
            answer: list[int] = []
            try:
                if chat:
                    yield _sse(chunk(None, None, first=True))
                async for ev in handle:
                    last = ev
                    answer.extend(ev.token_ids)
                    pending.extend(ev.logprobs or ())
                    if ev.error is not None:
                        yield _sse(error_body(str(ev.error), ev.error.error_type, ev.error.code))
                        break
                    if ev.finish_reason == "cancelled":
                        break
                    if ev.finish_reason is not None:
                        if deltas is not None:  # chat: the last pieces, then OpenAI's closing chunk (empty delta)
                            pieces = deltas.feed(ev.text)
                            tail, finish = deltas.finish(ev.finish_reason)
                            for d in pieces + tail:
                                yield _sse(chunk(None, None, delta=d))
                            final = chunk(None, finish)
                        else:
                            if ev.text:  # the last words go out before attribution is computed (issue 16)
                                yield _sse(chunk(ev.text, None))
                            final = chunk(None, ev.finish_reason)
                        attributed = await attribute(body, [(prompt_ids, answer)])
                        price = await charge(user, rid, body.model, ev.prompt_tokens, ev.completion_tokens, attributed)
                        final["price"] = price
                        final["attribution"] = attributed
                        yield _sse(final)
                    elif ev.text and deltas is not None:
                        for d in deltas.feed(ev.text):
                            yield _sse(chunk(None, None, delta=d))
                    elif ev.text:
                        yield _sse(chunk(ev.text, None))
                if include_usage and last is not None and last.error is None:
                    usage_chunk = chunk(None, None)
                    usage_chunk["choices"] = []
                    usage_chunk["usage"] = usage(last.prompt_tokens, last.completion_tokens)
                    usage_chunk["price"] = price
                    usage_chunk["attribution"] = attributed
                    yield _sse(usage_chunk)
                yield _sse("[DONE]")
            finally:
                handle.cancel()  # client went away mid-stream: free the sequence's KV row and adapter slot
                metering.release(rid)  # not charged (cancelled, failed): the whole reservation back; else a no-op

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    app.include_router(router, include_in_schema=not prefix)
    if prefix:
        app.include_router(router, prefix=prefix)
    return app
