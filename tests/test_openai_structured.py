"""Structured output and tool calling (issue 17, item 2) against a real OpenLoRA server over HTTP, driven by the
official `openai` client. The model is a tiny *random* Llama: it knows nothing of JSON, so every valid answer below
is the grammar's doing (xgrammar masks in the batched decode step)."""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import jsonschema
import openai
import pytest

from hub.auth import current_user
from hub.openlora import EngineConfig, OpenLoRAEngine
from hub.openlora.api import create_app
from tests.local_server import serving
from tests.structured_schemas import SCHEMAS
from tests.test_openlora_api import USER_TOKEN, _auth, _fake_user
from tests.tiny_model import build_random_adapter, build_tiny_model

ADAPTERS = ("shape-a", "shape-b")
ASK = [{"role": "user", "content": "Answer in JSON."}]
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather in a city", "parameters": SCHEMAS["weather_tool_args"]},
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"enum": ["UTC", "CET"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("structured")
    model_dir = build_tiny_model(root / "model", max_position_embeddings=1024)  # room for a tools prompt
    for i, name in enumerate(ADAPTERS):
        build_random_adapter(model_dir, root / "adapters" / name, rank=4, seed=7 + i)
    engine = OpenLoRAEngine(
        model_dir,
        adapters_dir=root / "adapters",
        config=EngineConfig(max_batch_size=16, max_slots=4, max_lora_rank=8),
        model_name="tiny-base",
    )
    app = create_app(engine, service_prefix="/services/openlora/")
    app.dependency_overrides[current_user] = _fake_user
    with serving(app) as url:
        yield {"url": url, "engine": engine}
    engine.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=USER_TOKEN, max_retries=0, timeout=120)


def schema_format(name: str) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": True}}


def test_every_schema_of_the_set_is_obeyed_by_a_random_model(client) -> None:
    assert len(SCHEMAS) >= 20
    checker = jsonschema.FormatChecker()
    for i, name in enumerate(SCHEMAS):
        for temperature in (0, 1.0):  # greedy, and sampled (wanders far more through the grammar)
            out = client.chat.completions.create(
                model=ADAPTERS[i % 2] if temperature else "tiny-base",
                messages=ASK,
                response_format=schema_format(name),
                temperature=temperature,
                seed=i,
                max_tokens=400,
            )
            choice = out.choices[0]
            assert choice.finish_reason == "stop", (name, choice.message.content)
            jsonschema.validate(json.loads(choice.message.content), SCHEMAS[name], format_checker=checker)


def test_streamed_json_is_the_whole_answer_in_pieces(client) -> None:
    args = {"model": ADAPTERS[1], "messages": ASK, "response_format": schema_format("matrix"), "max_tokens": 200}
    whole = client.chat.completions.create(**args, seed=4)
    chunks = list(client.chat.completions.create(**args, seed=4, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content and chunks[-1].choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(streamed), SCHEMAS["matrix"])


def test_json_object_mode_answers_an_object_or_a_cut_one(client, server) -> None:
    # A random model inside an open object may write digits past any budget (valid, never brief), so an answer cut
    # by max_tokens is checked as a prefix of JSON by xgrammar's built-in JSON grammar (not the server's grammar).
    import xgrammar as xgr

    from hub.openlora.structured.grammars import compiler_for

    builtin = compiler_for(server["engine"])._compiler.compile_builtin_json_grammar()
    for model in ("tiny-base", *ADAPTERS):
        out = client.chat.completions.create(
            model=model, messages=ASK, response_format={"type": "json_object"}, seed=1, max_tokens=60
        )
        content = out.choices[0].message.content
        assert content.startswith("{") and xgr.GrammarMatcher(builtin).accept_string(content), content
        if out.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(content), dict)
        else:
            assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 60


def test_max_tokens_cuts_the_json_with_finish_reason_length(client) -> None:
    out = client.chat.completions.create(
        model="tiny-base", messages=ASK, response_format=schema_format("nested_object"), max_tokens=4, temperature=0
    )
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 4
    with pytest.raises(ValueError):
        json.loads(out.choices[0].message.content)


def test_forced_and_required_tool_calls_come_back_as_tool_calls(client) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    forced = client.chat.completions.create(
        model=ADAPTERS[1], messages=ASK, tools=[WEATHER, TIME], tool_choice=named, max_tokens=200, seed=3
    )
    choice = forced.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_time" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), TIME["function"]["parameters"])

    for seed in range(3):
        required = client.chat.completions.create(
            model="tiny-base", messages=ASK, tools=[WEATHER, TIME], tool_choice="required", max_tokens=300, seed=seed
        )
        choice = required.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
        tools = {"get_weather": WEATHER, "get_time": TIME}
        for call in choice.message.tool_calls:
            jsonschema.validate(
                json.loads(call.function.arguments), tools[call.function.name]["function"]["parameters"]
            )


def test_tool_choice_none_and_auto_answer_text(client, server) -> None:
    none = client.chat.completions.create(
        model="tiny-base", messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=8, temperature=0
    )
    plain = client.chat.completions.create(model="tiny-base", messages=ASK, max_tokens=8, temperature=0)
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].message.content == plain.choices[0].message.content  # tools not shown, not called
    auto = client.chat.completions.create(model="tiny-base", messages=ASK, tools=[WEATHER], max_tokens=8, temperature=0)
    # The tools are in the prompt (a longer one); a random model rarely opens a call: whatever it did is well formed.
    assert auto.usage.prompt_tokens > plain.usage.prompt_tokens + 50
    for call in auto.choices[0].message.tool_calls or []:
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS["weather_tool_args"])


def test_streamed_tool_call_deltas_add_up_to_the_whole_answer(client) -> None:
    args = {"model": ADAPTERS[0], "messages": ASK, "tools": [WEATHER, TIME], "max_tokens": 200, "seed": 11}
    args.update(tool_choice="required", parallel_tool_calls=False)
    whole = client.chat.completions.create(**args).choices[0]
    chunks = list(client.chat.completions.create(**args, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    headers = [tc for d in deltas for tc in d.tool_calls or [] if tc.id]
    assert [h.function.name for h in headers] == [c.function.name for c in whole.message.tool_calls]
    assert all(h.type == "function" and h.function.arguments == "" for h in headers)
    for index, call in enumerate(whole.message.tool_calls):
        pieces = [tc.function.arguments for d in deltas for tc in d.tool_calls or [] if tc.index == index and not tc.id]
        assert len(pieces) >= 1 and "".join(pieces) == call.function.arguments
    assert whole.finish_reason == chunks[-1].choices[0].finish_reason == "tool_calls"
    assert len(whole.message.tool_calls) == 1 and not any(d.content for d in deltas)


def test_multi_turn_with_tool_results(client, server) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": '{"zone": "UTC"}'}}
    messages = [
        {"role": "user", "content": "What time is it?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
    ]
    out = client.chat.completions.create(model="tiny-base", messages=messages, tools=[TIME], max_tokens=5)
    from hub.openlora.structured.tool_format import render_messages

    rendered = render_messages([{**m, "name": None} for m in messages], [TIME])
    assert "<tool_response>" in rendered[3]["content"] and '"12:00"' in rendered[3]["content"]
    assert '{"name": "get_time", "arguments": {"zone": "UTC"}}' in rendered[2]["content"]
    assert out.usage.prompt_tokens == len(server["engine"].chat_prompt_ids(rendered))

    orphan = [messages[0], {"role": "tool", "tool_call_id": "call_9", "content": "12:00"}]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="tiny-base", messages=orphan, max_tokens=2)
    assert refused.value.body["param"] == "messages[1].tool_call_id"


def test_a_constrained_row_in_a_mixed_batch_answers_as_alone(server) -> None:
    async def run() -> tuple[list[str], list[str]]:
        aclient = openai.AsyncOpenAI(base_url=server["url"] + "/v1", api_key=USER_TOKEN, max_retries=0, timeout=120)
        constrained = [
            {"model": ADAPTERS[0], "response_format": schema_format("refs_and_defs"), "seed": 5, "temperature": 1.0},
            {"model": "tiny-base", "tools": [WEATHER], "tool_choice": "required", "temperature": 0},
        ]
        free = [{"model": ADAPTERS[i % 2], "seed": i, "temperature": 0.8} for i in range(6)]

        async def ask(extra: dict) -> str:
            out = await aclient.chat.completions.create(messages=ASK, max_tokens=120, **extra)
            message = out.choices[0].message
            return message.content or json.dumps([c.function.model_dump() for c in message.tool_calls])

        alone = [await ask(r) for r in constrained]
        mixed = await asyncio.gather(
            *(ask(r) for r in [free[0], constrained[0], *free[1:4], constrained[1], *free[4:]])
        )
        return alone, [mixed[1], mixed[5]]

    server["engine"].scheduler.peak_batch = 0
    alone, mixed = asyncio.run(run())
    assert mixed == alone
    assert server["engine"].scheduler.peak_batch >= 4  # the eight requests really shared decode steps


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}},
            "response_format.json_schema.schema",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "array", "uniqueItems": True}},
                }
            },
            "response_format.json_schema.schema",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}}},
            "response_format.json_schema.name",
        ),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "rm_rf"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "if": {}}}}]},
            "tools[0].function.parameters",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format"),
    ],
)
def test_bad_structured_requests_are_400_naming_the_param(client, extra: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="tiny-base", messages=ASK, max_tokens=2, **extra)
    assert refused.value.status_code == 400 and refused.value.body["param"] == param, refused.value.body


def test_completions_take_no_tools_and_abusive_schemas_are_refused(server) -> None:
    url = server["url"] + "/v1"
    tools = httpx.post(
        url + "/completions", json={"model": "tiny-base", "prompt": "x", "tools": [WEATHER]}, headers=_auth()
    )
    assert tools.status_code == 400 and tools.json()["error"]["param"] == "tools"
    deep: dict = {"type": "integer"}
    for _ in range(20):  # a schema built to exhaust the compiler: refused before any work
        deep = {"type": "object", "properties": {"a": deep}, "required": ["a"]}
    remote = {"$ref": "http://169.254.169.254/latest/meta-data"}  # never fetched: refused as unresolvable
    slow = {"type": "string", "pattern": "^((a{1,100}){1,100}){1,100}$"}  # minutes of compiling: refused at once
    for schema in (deep, remote, slow):
        body = {"model": "tiny-base", "messages": ASK, "max_tokens": 2}
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        refused = httpx.post(url + "/chat/completions", json=body, headers=_auth())
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "response_format.json_schema.schema"
    assert server["engine"].scheduler.alive


@pytest.mark.parametrize("piece", [1, 2, 5, 1000])
def test_tool_call_parser_is_the_same_whatever_the_stream_pieces(piece: int) -> None:
    from hub.openlora.structured.tool_format import call_text
    from hub.openlora.structured.tool_parser import ToolCallParser, parse_answer

    tricky = '{"note": "}\\n</tool_call> inside a string", "n": {"k": [1, 2]}}'
    text = "Let me check. <tool_ <tool_call>x " + call_text("get_time", tricky) + "\n" + call_text("get_time", "{}")
    parser, deltas = ToolCallParser(), []
    for i in range(0, len(text), piece):
        deltas += parser.feed(text[i : i + piece])
    deltas += parser.finish()
    content, calls, finish = parse_answer(text, "stop")
    assert content == "".join(d.content for d in deltas if d.content) == "Let me check. <tool_ <tool_call>x "
    assert [c["function"]["arguments"] for c in calls] == [tricky, "{}"] and finish == "tool_calls"
    for index, call in enumerate(calls):
        assert "".join(d.arguments for d in deltas if d.call_index == index) == call["function"]["arguments"]
    cut = call_text("get_time", '{"zone": "UT')[: -len("}\n</tool_call>")]
    assert parse_answer(cut, "length")[1][0]["function"]["arguments"] == '{"zone": "UT'
