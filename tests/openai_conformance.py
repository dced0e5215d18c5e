"""OpenAI conformance checks for OpenLoRA (issue 17, item 4): the official `openai` client (sync and async) and
LangChain's `ChatOpenAI` against a real OpenLoRA server over HTTP, serving the tiny test model and its adapters.

Each check is a function of a `Target` that raises AssertionError (or the client's error) when OpenLoRA does not
behave as OpenAI's API does. `tests/test_openai_conformance.py` runs them as tests; `bench/openai_conformance.py`
runs the same checks as a script and records the counts. The refusal checks are generated from
`hub.openlora.bodies.NEUTRAL_VALUES`, so a parameter stops being checked as refused the moment it is implemented.

Auth is the one stand-in: the hub's token check is replaced by a fixed token map (`tests.test_openlora_api`), as
JupyterHub is not started here; it is tested for real in the hub's end-to-end tests.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from hub.auth import current_user
from hub.openlora import EngineConfig, OpenLoRAEngine, SamplingParams
from hub.openlora.api import create_app
from hub.openlora.bodies import NEUTRAL_VALUES
from hub.openlora.logprobs_format import TokenTexts
from tests.local_server import serving
from tests.test_openlora_api import USER_TOKEN, _fake_user
from tests.tiny_model import ADAPTER_SPECS, shared_assets

BASE = "tiny-base"
ADAPTERS = list(ADAPTER_SPECS)
HI = [{"role": "user", "content": "Tell me about the sea"}]


@dataclass
class Target:
    url: str  # the server's root; the OpenAI base URL is url + "/v1"
    engine: OpenLoRAEngine  # only for token ids (to pick logit_bias keys); the checks talk HTTP
    _client: openai.OpenAI | None = None

    def client(self) -> openai.OpenAI:
        """One sync client for every check (its connection pool is reused)."""
        if self._client is None:
            self._client = openai.OpenAI(base_url=self.url + "/v1", api_key=USER_TOKEN, max_retries=0, timeout=60)
        return self._client

    def aclient(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=USER_TOKEN, max_retries=0, timeout=60)

    def greedy_ids(self, model: str, messages: list, max_tokens: int) -> list[int]:
        params = SamplingParams(max_tokens=max_tokens, temperature=0)
        return self.engine.generate(model, self.engine.chat_prompt_ids(messages), params).token_ids

    def token_bytes(self, token_id: int) -> bytes:
        return TokenTexts(self.engine.tokenizer).bytes(token_id)

    def token_id(self, text: str) -> int:
        ids = self.engine.encode(text)
        assert len(ids) == 1, f"{text!r} is {len(ids)} tokens"
        return ids[0]


@contextmanager
def conformance_target() -> Iterator[Target]:
    """A real OpenLoRA server (uvicorn, loopback port) over the tiny model and its eight adapters."""
    model_dir, adapters = shared_assets()
    workdir = Path(tempfile.mkdtemp(prefix="openai-conformance-"))
    try:
        shutil.copytree(adapters, workdir / "adapters")
        config = EngineConfig(max_batch_size=16, max_slots=4, max_lora_rank=16)
        with OpenLoRAEngine(model_dir, adapters_dir=workdir / "adapters", config=config, model_name=BASE) as engine:
            app = create_app(engine, price_per_1k=lambda _m: 0.0, service_prefix="/services/openlora/")
            app.dependency_overrides[current_user] = _fake_user
            with serving(app) as url:
                yield Target(url=url, engine=engine)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


CHECKS: dict[str, Callable[[Target], None]] = {}


def check(name: str) -> Callable[[Callable[[Target], None]], Callable[[Target], None]]:
    def register(fn: Callable[[Target], None]) -> Callable[[Target], None]:
        assert name not in CHECKS, name
        CHECKS[name] = fn
        return fn

    return register


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def chat(t: Target, model: str = ADAPTERS[0], messages: list | None = None, **kwargs: Any):
    kwargs = {"max_tokens": 8, "temperature": 0, **kwargs}
    return t.client().chat.completions.create(model=model, messages=messages or HI, **kwargs)


def complete(t: Target, model: str = ADAPTERS[1], prompt: Any = "Once upon a time", **kwargs: Any):
    kwargs = {"max_tokens": 8, "temperature": 0, **kwargs}
    return t.client().completions.create(model=model, prompt=prompt, **kwargs)


def refused(call: Callable[[], Any], param: str | None, error: type = openai.BadRequestError) -> Any:
    """The call fails with `error` in OpenAI's shape: a string code and `param` naming the field."""
    try:
        call()
    except error as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        assert body.get("param") == param, body
        assert isinstance(body.get("code"), str) and body.get("type"), body
        assert exc.request_id and exc.request_id.startswith("req_")
        return exc
    raise AssertionError(f"expected {error.__name__} naming {param}")


def stream_text(chunks: list) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def answer_bytes(content: list) -> bytes:
    return b"".join(bytes(entry.bytes) for entry in content)


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


# -- sampling controls -------------------------------------------------------------------------------------------------
@check("chat: logprobs true gives one entry per answer token, bytes join to the answer")
def _(t: Target) -> None:
    out = chat(t, max_tokens=10, logprobs=True)
    content = out.choices[0].logprobs.content
    assert content and all(e.logprob <= 0 and e.top_logprobs == [] for e in content)
    assert len(content) in (out.usage.completion_tokens, out.usage.completion_tokens - 1)  # the end token: none
    # Random tiny-model answers split characters across tokens: the joined bytes decode to the answer.
    assert answer_bytes(content).decode("utf-8", errors="replace") == out.choices[0].message.content
    assert out.choices[0].logprobs.refusal is None


@check("chat: top_logprobs lists the k most likely, greedy picks the first")
def _(t: Target) -> None:
    content = chat(t, max_tokens=6, logprobs=True, top_logprobs=5).choices[0].logprobs.content
    for entry in content:
        values = [top.logprob for top in entry.top_logprobs]
        assert len(values) == 5 and values == sorted(values, reverse=True)
        assert entry.top_logprobs[0].token == entry.token and abs(entry.top_logprobs[0].logprob - entry.logprob) < 1e-6


@check("chat stream: logprobs arrive with the chunks and equal the non-streamed ones")
def _(t: Target) -> None:
    full = chat(t, max_tokens=12, logprobs=True, top_logprobs=2).choices[0].logprobs.content
    chunks = list(chat(t, max_tokens=12, logprobs=True, top_logprobs=2, stream=True))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [(e.token, round(e.logprob, 5)) for e in streamed] == [(e.token, round(e.logprob, 5)) for e in full]


@check("chat: logprobs are those of the processed distribution (logit_bias shows in them)")
def _(t: Target) -> None:
    plain = chat(t, max_tokens=1, logprobs=True).choices[0].logprobs.content[0]
    rival = t.token_id(" wave")
    biased = chat(t, max_tokens=1, logprobs=True, top_logprobs=1, logit_bias={str(rival): 100})
    entry = biased.choices[0].logprobs.content[0]
    assert entry.token == " wave" and entry.logprob > -0.01 and plain.token != " wave"


@check("chat: logit_bias +100 makes a token the whole answer; -100 bans one")
def _(t: Target) -> None:
    boosted = chat(t, max_tokens=4, logit_bias={str(t.token_id(" sea")): 100})
    assert boosted.choices[0].message.content == " sea" * 4
    ban = t.greedy_ids(ADAPTERS[0], HI, 8)[0]
    banned = chat(t, max_tokens=8, logprobs=True, logit_bias={str(ban): -100}).choices[0].logprobs.content
    assert t.token_bytes(ban) not in [bytes(e.bytes) for e in banned]


@check("chat: presence_penalty -2 makes the answer repeat itself; +2 changes it")
def _(t: Target) -> None:
    greedy = chat(t, max_tokens=16, logprobs=True).choices[0].logprobs.content
    negative = chat(t, max_tokens=16, logprobs=True, presence_penalty=-2).choices[0].logprobs.content
    positive = chat(t, max_tokens=16, logprobs=True, presence_penalty=2).choices[0].logprobs.content
    tokens = [[e.token for e in run] for run in (greedy, negative, positive)]
    assert len(set(tokens[1])) < len(set(tokens[0])) and tokens[2] != tokens[0]


@check("chat: frequency_penalty 2 changes the greedy answer; the same request answers the same")
def _(t: Target) -> None:
    plain = chat(t, max_tokens=16).choices[0].message.content
    once = chat(t, max_tokens=16, frequency_penalty=2).choices[0].message.content
    assert once != plain and once == chat(t, max_tokens=16, frequency_penalty=2).choices[0].message.content


@check("async: penalties and bias apply per request in one concurrent batch")
def _(t: Target) -> None:
    settings = [{}, {"presence_penalty": 2}, {"frequency_penalty": -2}, {"logit_bias": {str(t.token_id(" sea")): 100}}]
    alone = [chat(t, max_tokens=10, **s).choices[0].message.content for s in settings]

    async def go() -> list[str]:
        async with t.aclient() as client:
            calls = [
                client.chat.completions.create(model=ADAPTERS[0], messages=HI, max_tokens=10, temperature=0, **s)
                for s in settings
            ]
            return [out.choices[0].message.content for out in await asyncio.gather(*calls)]

    assert run_async(go()) == alone and len(set(alone)) == len(alone)


# -- legacy completions ------------------------------------------------------------------------------------------------
@check("completions: Completion shape, usage, max_tokens 16 when omitted or null")
def _(t: Target) -> None:
    omitted = t.client().completions.create(model=ADAPTERS[1], prompt="Once upon a time", temperature=0)
    out = complete(t, max_tokens=None)
    assert omitted.choices[0].text == out.choices[0].text == complete(t, max_tokens=16).choices[0].text
    assert out.id.startswith("cmpl-") and out.object == "text_completion" and out.model == ADAPTERS[1]
    assert out.choices[0].index == 0 and isinstance(out.choices[0].text, str) and out.choices[0].logprobs is None
    assert out.usage.completion_tokens <= 16
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


@check("completions: a list of prompts gives one choice each, in order")
def _(t: Target) -> None:
    out = complete(t, prompt=["Once upon a time", "The sea"])
    assert [c.index for c in out.choices] == [0, 1]
    assert out.choices[1].text == complete(t, prompt="The sea").choices[0].text


@check("completions: a prompt of token ids equals its text")
def _(t: Target) -> None:
    ids = t.engine.encode("Once upon a time")
    assert complete(t, prompt=ids).choices[0].text == complete(t).choices[0].text


@check("completions: stop, seed and temperature")
def _(t: Target) -> None:
    full = complete(t, max_tokens=16).choices[0].text
    stop = full[5:7]
    assert complete(t, max_tokens=16, stop=[stop]).choices[0].text == full[: full.index(stop)]
    sampled = [complete(t, temperature=1.2, seed=s).choices[0].text for s in (5, 5, 6)]
    assert sampled[0] == sampled[1]


@check("completions: user accepted, n=2 refused naming n")
def _(t: Target) -> None:
    assert complete(t, user="student-7").choices[0].text == complete(t).choices[0].text
    refused(lambda: complete(t, n=2), "n")


@check("completions stream: text joins; include_usage; finish reason")
def _(t: Target) -> None:
    full = complete(t, max_tokens=10)
    chunks = list(complete(t, max_tokens=10, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == full.choices[0].finish_reason


@check("completions: logprobs k gives tokens, token_logprobs, top k (+ chosen), text_offset")
def _(t: Target) -> None:
    out = complete(t, max_tokens=8, logprobs=3).choices[0]
    lp = out.logprobs
    assert "".join(lp.tokens) == out.text and len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs)
    assert lp.text_offset == [sum(len(tok) for tok in lp.tokens[:i]) for i in range(len(lp.tokens))]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert 3 <= len(top) <= 4 and top[token] == logprob and logprob == max(top.values())


@check("completions stream: logprobs per chunk equal the non-streamed ones")
def _(t: Target) -> None:
    full = complete(t, max_tokens=10, logprobs=1).choices[0].logprobs
    chunks = [c for c in complete(t, max_tokens=10, logprobs=1, stream=True) if c.choices and c.choices[0].logprobs]
    assert [tok for c in chunks for tok in c.choices[0].logprobs.tokens] == full.tokens
    assert [o for c in chunks for o in c.choices[0].logprobs.text_offset] == full.text_offset


@check("completions: penalties and logit_bias")
def _(t: Target) -> None:
    plain = complete(t, max_tokens=16).choices[0].text
    assert complete(t, max_tokens=16, frequency_penalty=2, presence_penalty=1).choices[0].text != plain
    assert complete(t, max_tokens=3, logit_bias={str(t.token_id(" sea")): 100}).choices[0].text == " sea" * 3


# -- errors ------------------------------------------------------------------------------------------------------------
@check("errors: a bad key is AuthenticationError, code invalid_api_key")
def _(t: Target) -> None:
    bad = openai.OpenAI(base_url=t.url + "/v1", api_key="wrong", max_retries=0)
    exc = refused(lambda: bad.models.list(), None, openai.AuthenticationError)
    assert exc.code == "invalid_api_key"


@check("errors: unknown model is NotFoundError naming /v1/models")
def _(t: Target) -> None:
    exc = refused(lambda: chat(t, model="no-such"), None, openai.NotFoundError)
    assert exc.code == "model_not_found" and "/v1/models" in exc.message


@check("errors: prompt + max_tokens over the context is context_length_exceeded")
def _(t: Target) -> None:
    exc = refused(lambda: complete(t, max_tokens=100_000), None)
    assert exc.code == "context_length_exceeded"


@check("errors: async client raises the same typed errors")
def _(t: Target) -> None:
    async def go() -> None:
        async with t.aclient() as client:
            try:
                await client.chat.completions.create(model=ADAPTERS[0], messages=HI, temperature=9)
            except openai.BadRequestError as exc:
                assert exc.body["param"] == "temperature"
                return
        raise AssertionError("temperature 9 was accepted")

    run_async(go())


INVALID = [
    ("temperature", {"temperature": 2.5}),
    ("top_p", {"top_p": 1.5}),
    ("max_tokens", {"max_tokens": 0}),
    ("max_completion_tokens", {"max_completion_tokens": 0}),
    ("n", {"n": 2}),
    ("presence_penalty", {"presence_penalty": 2.5}),
    ("frequency_penalty", {"frequency_penalty": -3}),
    ("logit_bias", {"logit_bias": {"12": 150}}),
    ("logit_bias", {"logit_bias": {"not-a-token": 1}}),
    ("logit_bias", {"logit_bias": {"999999999": 1}}),
    ("top_logprobs", {"top_logprobs": 2}),  # without logprobs: true
    ("top_logprobs", {"logprobs": True, "top_logprobs": 21}),
    ("messages[0].role", {"messages": [{"role": "wizard", "content": "hi"}]}),
    ("messages[0].content[0].type", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
    ("temperature_boost", {"extra_body": {"temperature_boost": 1}}),
]
for _param, _extra in INVALID:

    def _invalid(t: Target, param: str = _param, extra: dict = _extra) -> None:
        refused(lambda: chat(t, **{"max_tokens": 2, **extra}), param)

    check(f"errors: chat {_param}={_extra} is a 400 naming {_param}")(_invalid)

for _param, _extra in [("logprobs", {"logprobs": 6}), ("top_logprobs", {"extra_body": {"top_logprobs": 2}})]:

    def _invalid_completion(t: Target, param: str = _param, extra: dict = _extra) -> None:
        refused(lambda: complete(t, **extra), param)

    check(f"errors: completions {_param}={_extra} is a 400 naming {_param}")(_invalid_completion)


# Not-implemented features: a value that uses each one. Every NEUTRAL_VALUES entry needs one (checked below).
USING = {
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
    "tool_choice": "required",
    "functions": [{"name": "f", "parameters": {"type": "object", "properties": {}}}],
    "function_call": "auto",
    "parallel_tool_calls": None,  # a bool: both values are neutral without tools
    "response_format": {"type": "json_object"},
    "suffix": "the end",
    "best_of": 2,
    "store": True,
    "metadata": {"k": "v"},
    "service_tier": "flex",
    "modalities": ["text", "audio"],
    "prediction": {"type": "content", "content": "x"},
    "audio": {"voice": "alloy", "format": "wav"},
    "reasoning_effort": "low",
    "web_search_options": {},
    "echo": True,
}
COMPLETIONS_ONLY = {"suffix", "best_of", "echo"}
CHAT_ONLY_OR_BOTH = set(NEUTRAL_VALUES) - COMPLETIONS_ONLY


@check("refusals: every not-implemented parameter has a refusal check")
def _(t: Target) -> None:
    assert not set(NEUTRAL_VALUES) - set(USING), set(NEUTRAL_VALUES) - set(USING)


for _name in [*NEUTRAL_VALUES, "echo"]:
    if USING.get(_name) is None:
        continue

    def _refusal(t: Target, name: str = _name) -> None:
        if name in COMPLETIONS_ONLY:
            exc = refused(lambda: complete(t, extra_body={name: USING[name]}), name)
        else:
            exc = refused(lambda: chat(t, extra_body={name: USING[name]}), name)
        assert exc.code == "unsupported_parameter"

    check(f"refusals: {_name} (not implemented) is a 400 unsupported_parameter naming it")(_refusal)


# -- headers and wire -------------------------------------------------------------------------------------------------
@check("wire: x-request-id on answers and errors, distinct per request")
def _(t: Target) -> None:
    ok = httpx.get(t.url + "/v1/models", headers={"Authorization": f"Bearer {USER_TOKEN}"})
    bad = httpx.get(t.url + "/v1/models")
    assert ok.headers["x-request-id"].startswith("req_") and bad.headers["x-request-id"].startswith("req_")
    assert ok.headers["x-request-id"] != bad.headers["x-request-id"]


@check("wire: the service prefix serves the same API")
def _(t: Target) -> None:
    prefixed = openai.OpenAI(base_url=t.url + "/services/openlora/v1", api_key=USER_TOKEN, max_retries=0)
    out = prefixed.chat.completions.create(model=ADAPTERS[0], messages=HI, max_tokens=8, temperature=0)
    assert out.choices[0].message.content == chat(t).choices[0].message.content


# -- LangChain --------------------------------------------------------------------------------------------------------
@check("langchain: ChatOpenAI invoke, stream and logprobs round trip")
def _(t: Target) -> None:
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=ADAPTERS[0], base_url=t.url + "/v1", api_key=USER_TOKEN, temperature=0, max_tokens=8, max_retries=0
    )
    reply = llm.invoke([HumanMessage(content=HI[0]["content"])])
    assert reply.content == chat(t).choices[0].message.content
    assert reply.usage_metadata["total_tokens"] == chat(t).usage.total_tokens
    assert "".join(piece.content for piece in llm.stream(HI[0]["content"])) == reply.content
    scored = llm.bind(logprobs=True).invoke(HI[0]["content"])
    ours = chat(t, logprobs=True).choices[0].logprobs.content
    assert [e["token"] for e in scored.response_metadata["logprobs"]["content"]] == [e.token for e in ours]


def run_checks(target: Target) -> dict[str, str | None]:
    """Every check by name: None if it passed, else what failed (for the script)."""
    results: dict[str, str | None] = {}
    for name, fn in CHECKS.items():
        try:
            fn(target)
            results[name] = None
        except Exception as exc:  # a failed check is a result to record, whatever it raised
            results[name] = f"{type(exc).__name__}: {exc}"[:500]
    return results
