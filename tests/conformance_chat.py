"""OpenAI conformance: models, chat completions and chat streaming, with the sync and async clients."""

from __future__ import annotations

import asyncio

import openai

from hub.openlora.bodies import NEUTRAL_VALUES
from tests.conformance_core import (
    ADAPTERS,
    BASE,
    CHAT_ONLY_OR_BOTH,
    HI,
    Target,
    chat,
    check,
    refused,
    run_async,
    stream_text,
)


# -- models -------------------------------------------------------------------------------------------------------
@check("models.list: base model and every adapter as Model objects")
def _(t: Target) -> None:
    models = {m.id: m for m in t.client().models.list()}
    assert set(models) == {BASE, *ADAPTERS}
    assert all(m.object == "model" and isinstance(m.created, int) and m.owned_by for m in models.values())


@check("models.retrieve: same object as in the list")
def _(t: Target) -> None:
    listed = {m.id: m for m in t.client().models.list()}
    for model in (BASE, ADAPTERS[3]):
        got = t.client().models.retrieve(model)
        assert got.id == model and got.created == listed[model].created and got.owned_by == listed[model].owned_by


@check("models.retrieve: unknown model is NotFoundError, code model_not_found")
def _(t: Target) -> None:
    exc = refused(lambda: t.client().models.retrieve("no-such-model"), None, openai.NotFoundError)
    assert exc.code == "model_not_found"


@check("async models.list and retrieve")
def _(t: Target) -> None:
    async def go() -> None:
        async with t.aclient() as client:
            ids = [m.id async for m in client.models.list()]
            assert BASE in ids and (await client.models.retrieve(ADAPTERS[0])).id == ADAPTERS[0]

    run_async(go())


# -- chat -----------------------------------------------------------------------------------------------------------
@check("chat: ChatCompletion shape, id, object, model, role, usage")
def _(t: Target) -> None:
    out = chat(t)
    assert out.id.startswith("chatcmpl-") and out.object == "chat.completion" and out.model == ADAPTERS[0]
    (choice,) = out.choices
    assert choice.index == 0 and choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length") and choice.logprobs is None
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert out._request_id and out._request_id.startswith("req_")


@check("chat: max_tokens bounds the answer, finish_reason length")
def _(t: Target) -> None:
    out = chat(t, max_tokens=3)
    assert out.usage.completion_tokens <= 3
    assert out.choices[0].finish_reason == ("length" if out.usage.completion_tokens == 3 else "stop")


@check("chat: max_completion_tokens bounds the answer like max_tokens")
def _(t: Target) -> None:
    a = chat(t, max_tokens=None, max_completion_tokens=4)
    b = chat(t, max_tokens=4)
    assert a.choices[0].message.content == b.choices[0].message.content and a.usage.completion_tokens <= 4


@check("chat: temperature 0 is deterministic")
def _(t: Target) -> None:
    assert chat(t, max_tokens=12).choices[0].message.content == chat(t, max_tokens=12).choices[0].message.content


@check("chat: top_p 0 is greedy")
def _(t: Target) -> None:
    greedy = chat(t, max_tokens=10).choices[0].message.content
    assert chat(t, max_tokens=10, temperature=1, top_p=0).choices[0].message.content == greedy


@check("chat: seed reproduces a sampled answer; other seeds differ")
def _(t: Target) -> None:
    runs = [chat(t, temperature=1, seed=s, max_tokens=10).choices[0].message.content for s in (11, 11, 12, 13)]
    assert runs[0] == runs[1] and len(set(runs)) >= 2


@check("chat: a stop string ends the answer before it, finish_reason stop")
def _(t: Target) -> None:
    full = chat(t, max_tokens=16).choices[0].message.content
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    out = chat(t, max_tokens=16, stop=stop).choices[0]
    assert out.message.content == full[: full.index(stop)] and out.finish_reason == "stop"


@check("chat: a list of stop strings, the first one met wins")
def _(t: Target) -> None:
    full = chat(t, max_tokens=16).choices[0].message.content
    early, late = full[3:5], full[-3:]
    assert chat(t, max_tokens=16, stop=[late, early]).choices[0].message.content == full[: full.index(early)]


@check("chat: developer role is the system role")
def _(t: Target) -> None:
    system = chat(t, messages=[{"role": "system", "content": "Be brief."}, *HI]).choices[0].message.content
    dev = chat(t, messages=[{"role": "developer", "content": "Be brief."}, *HI]).choices[0].message.content
    assert dev == system


@check("chat: text content parts equal string content")
def _(t: Target) -> None:
    parts = [
        {"role": "user", "content": [{"type": "text", "text": "Tell me "}, {"type": "text", "text": "about the sea"}]}
    ]
    assert chat(t, messages=parts).choices[0].message.content == chat(t).choices[0].message.content


@check("chat: multi-turn with an assistant message")
def _(t: Target) -> None:
    turns = [*HI, {"role": "assistant", "content": "The sea is wide."}, {"role": "user", "content": "And deep?"}]
    out = chat(t, messages=turns)
    assert out.usage.prompt_tokens > chat(t).usage.prompt_tokens


@check("chat: user, n=1 and neutral values of unimplemented features are accepted")
def _(t: Target) -> None:
    neutral = {name: values[-1] for name, values in NEUTRAL_VALUES.items() if name in CHAT_ONLY_OR_BOTH}
    out = chat(t, user="student-7", n=1, extra_body=neutral)
    assert out.choices[0].message.content == chat(t).choices[0].message.content


@check("chat: the base model by its id")
def _(t: Target) -> None:
    assert chat(t, model=BASE).model == BASE


@check("chat: different adapters give different answers")
def _(t: Target) -> None:
    answers = {chat(t, model=m, max_tokens=10).choices[0].message.content for m in (BASE, *ADAPTERS[:3])}
    assert len(answers) >= 3


@check("chat: top_p nucleus sampling with a seed reproduces; a tiny top_p is greedy")
def _(t: Target) -> None:
    nucleus = [chat(t, temperature=1, top_p=0.5, seed=3, max_tokens=10).choices[0].message.content for _ in range(2)]
    assert nucleus[0] == nucleus[1]
    greedy = chat(t, max_tokens=10).choices[0].message.content
    assert chat(t, temperature=1, top_p=1e-6, seed=4, max_tokens=10).choices[0].message.content == greedy


@check("chat: our fields price and attribution; attribution false (extra_body) turns it off")
def _(t: Target) -> None:
    out = chat(t)
    assert out.model_extra["price"] == 0 and out.model_extra["attribution"]["attributed"] is False
    assert chat(t, extra_body={"attribution": False}).model_extra["attribution"] is None


# -- chat streaming ---------------------------------------------------------------------------------------------------
@check("chat stream: deltas join to the answer; role first; one finish chunk")
def _(t: Target) -> None:
    full = chat(t, max_tokens=12)
    chunks = list(chat(t, max_tokens=12, stream=True))
    assert stream_text(chunks) == full.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].object == "chat.completion.chunk"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason == full.choices[0].finish_reason
    assert len({c.id for c in chunks}) == 1 and all(c.usage is None for c in chunks)


@check("chat stream: include_usage adds a last chunk with usage and no choices")
def _(t: Target) -> None:
    full = chat(t, max_tokens=12)
    chunks = list(chat(t, max_tokens=12, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == full.usage.total_tokens
    assert all(c.usage is None for c in chunks[:-1])


@check("chat stream: stop strings are never streamed")
def _(t: Target) -> None:
    full = chat(t, max_tokens=16).choices[0].message.content
    stop = full[6:8]
    assert stream_text(list(chat(t, max_tokens=16, stop=stop, stream=True))) == full[: full.index(stop)]


@check("async chat: same answer as sync; async stream joins to it")
def _(t: Target) -> None:
    sync = chat(t, max_tokens=10).choices[0].message.content

    async def go() -> tuple[str, str]:
        async with t.aclient() as client:
            out = await client.chat.completions.create(model=ADAPTERS[0], messages=HI, max_tokens=10, temperature=0)
            stream = await client.chat.completions.create(
                model=ADAPTERS[0], messages=HI, max_tokens=10, temperature=0, stream=True
            )
            return out.choices[0].message.content, stream_text([c async for c in stream])

    assert run_async(go()) == (sync, sync)


@check("async: 12 concurrent mixed-adapter requests equal the same requests run alone")
def _(t: Target) -> None:
    jobs = [(ADAPTERS[i % len(ADAPTERS)], f"Question {i}: why?") for i in range(12)]
    alone = [chat(t, model=m, messages=[{"role": "user", "content": q}]).choices[0].message.content for m, q in jobs]

    async def go() -> list[str]:
        async with t.aclient() as client:
            calls = [
                client.chat.completions.create(
                    model=m, messages=[{"role": "user", "content": q}], max_tokens=8, temperature=0
                )
                for m, q in jobs
            ]
            return [out.choices[0].message.content for out in await asyncio.gather(*calls)]

    assert run_async(go()) == alone
