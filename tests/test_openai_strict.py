"""OpenLoRA refuses what it does not implement, the way OpenAI's API refuses a bad request: HTTP 400 with `param`
naming the field and a string `code`, never a 200 that silently ignored the field (issue 17, item 3). Against the
real app over HTTP with the official `openai` client."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.test_openlora_api import ADAPTERS, USER_TOKEN, _auth, client, server  # noqa: F401 - fixtures

MESSAGES = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"functions": [TOOL["function"]]}, "functions"),
        ({"function_call": {"name": "lookup"}}, "function_call"),
        ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"not": {}}}}},
            "response_format.json_schema.schema",
        ),
        # Implemented sampling controls: out-of-range values are refused the same way (issue 17, item 1).
        ({"top_logprobs": 3}, "top_logprobs"),  # without logprobs: true
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"presence_penalty": 5}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"logit_bias": {"42": 101}}, "logit_bias"),
        ({"logit_bias": {"hello": 1}}, "logit_bias"),
        ({"logit_bias": {"99999999": 1}}, "logit_bias"),
        ({"n": 2}, "n"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": -1}, "max_tokens"),
    ],
)
def test_unimplemented_or_invalid_chat_parameters_are_refused_and_named(client, extra: dict, param: str) -> None:  # noqa: F811
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=ADAPTERS[0], messages=MESSAGES, **{"max_tokens": 2, **extra})
    error = refused.value.body
    assert refused.value.status_code == 400 and error["param"] == param, error
    assert isinstance(error["code"], str) and error["type"] == "invalid_request_error"


def test_unknown_fields_images_and_roles_are_refused(server) -> None:  # noqa: F811
    url = server["url"] + "/v1/chat/completions"
    base = {"model": ADAPTERS[0], "messages": MESSAGES, "max_tokens": 1}
    unknown = httpx.post(url, json={**base, "temperature_boost": 3}, headers=_auth()).json()["error"]
    assert unknown["param"] == "temperature_boost" and "Unrecognized request argument" in unknown["message"]
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]
    refused = httpx.post(url, json={**base, "messages": image}, headers=_auth())
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "messages[0].content[0].type"
    assert "text models only" in refused.json()["error"]["message"]
    wizard = httpx.post(url, json={**base, "messages": [{"role": "wizard", "content": "hi"}]}, headers=_auth())
    assert wizard.status_code == 400 and wizard.json()["error"]["param"] == "messages[0].role"


def test_neutral_values_developer_role_and_greedy_top_p_are_served(client) -> None:  # noqa: F811
    neutral = {"presence_penalty": 0, "frequency_penalty": 0, "logprobs": False, "tool_choice": "none"}
    messages = [{"role": "developer", "content": "Be brief."}, *MESSAGES]
    greedy = client.chat.completions.create(
        model=ADAPTERS[1], messages=messages, max_tokens=5, temperature=0, response_format={"type": "text"}, **neutral
    )
    top_p_zero = client.chat.completions.create(model=ADAPTERS[1], messages=messages, max_tokens=5, top_p=0)
    assert top_p_zero.choices[0].message.content == greedy.choices[0].message.content  # top_p 0 is greedy


def test_every_answer_has_a_request_id_and_string_error_codes(server) -> None:  # noqa: F811
    ok = httpx.get(server["url"] + "/v1/models", headers=_auth())
    assert ok.status_code == 200 and ok.headers["x-request-id"].startswith("req_")
    bad_key = httpx.get(server["url"] + "/v1/models", headers={"Authorization": "Bearer nope"})
    assert bad_key.headers["x-request-id"] != ok.headers["x-request-id"]
    assert bad_key.status_code == 401 and bad_key.json()["error"]["code"] == "invalid_api_key"
    missing = httpx.post(
        server["url"] + "/v1/chat/completions", json={"model": "no-such", "messages": MESSAGES}, headers=_auth()
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert USER_TOKEN  # the fixtures' user token is the one _auth() sends


def test_abusive_sampling_values_are_refused_and_the_server_keeps_serving(server) -> None:  # noqa: F811
    """A student sending NaN / infinite penalties, a bias on every token or absurd logprob counts gets a 400 naming
    the field, and the next request is served as usual."""
    url = server["url"] + "/v1/chat/completions"
    base = {"model": ADAPTERS[0], "messages": MESSAGES, "max_tokens": 2}
    for raw, param in (
        ('"presence_penalty": NaN', "presence_penalty"),
        ('"frequency_penalty": Infinity', "frequency_penalty"),
        ('"logit_bias": {"42": NaN}', "logit_bias"),
        ('"logit_bias": {"42": -Infinity}', "logit_bias"),
        ('"logprobs": true, "top_logprobs": 1000000000', "top_logprobs"),
    ):
        body = json.dumps(base)[:-1] + ", " + raw + "}"
        answer = httpx.post(url, content=body, headers={**_auth(), "Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, (raw, answer.text)
    everything = {str(token): 100 for token in range(5000)}
    answer = httpx.post(url, json={**base, "logit_bias": everything}, headers=_auth())
    assert answer.status_code == 400 and "at most 1024" in answer.json()["error"]["message"]
    assert httpx.post(url, json=base, headers=_auth()).status_code == 200
