"""OpenAI conformance: errors and refusals (typed errors, string codes, `param`), headers, and LangChain."""

from __future__ import annotations

import httpx
import openai

from hub.openlora.bodies import NEUTRAL_VALUES
from tests.conformance_core import (
    ADAPTERS,
    COMPLETIONS_ONLY,
    HI,
    USER_TOKEN,
    Target,
    chat,
    check,
    complete,
    refused,
    run_async,
)


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
