"""Request bodies of the OpenLoRA API and its error shape.

Strict, as a client needs: a field this server does not know, or an OpenAI feature it does not implement (legacy
`functions`, images, n > 1), is a 400 whose `param` names the field, never silently ignored. A feature's neutral
value (`function_call: "none"`) is accepted. Structured output (`response_format`, `tools`, `tool_choice`) is
chat-only, see hub.openlora.structured.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.openlora.errors import InvalidRequestError
from hub.openlora.sampling import SamplingParams
from hub.openlora.structured.bodies import NamedToolChoice, ResponseFormat, Tool, ToolCallIn, ToolChoice


# -- request bodies -------------------------------------------------------------------------------------------
class StreamOptions(BaseModel):
    include_usage: bool = False


def unsupported(param: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{what} is not supported by this server (OpenLoRA): remove `{param}`",
        code="unsupported_parameter",
        param=param,
    )


# OpenAI fields this server does not implement, with the values that mean "not used" (accepted as no-ops).
NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "functions": (None, []),
    "function_call": (None, "none"),
    "suffix": (None, ""),
    "best_of": (None, 1),
    "store": (None, False),
    "metadata": (None, {}),
    "service_tier": (None, "auto", "default"),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "audio": (None,),
    "reasoning_effort": (None,),
    "web_search_options": (None,),
}
WHAT = {
    "functions": "legacy function calling (use `tools`)",
    "function_call": "legacy function calling (use `tool_choice`)",
}


MAX_LOGIT_BIAS = 1024


class GenerationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is a 400 naming it, not silently ignored

    model: str
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)  # 0: greedy, as OpenAI allows
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    attribution: bool = True  # ours: false skips Proof of Attribution (the contributors' pool goes unattributed)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None  # token id (as a string, as OpenAI takes it) -> -100..100
    # Declared so that a request using them gets a 400 naming them (see NEUTRAL_VALUES), not "unknown field".
    functions: list[Any] | None = None
    function_call: Any = None
    suffix: str | None = None
    best_of: int | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None
    prediction: Any = None
    audio: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None

    @field_validator("logit_bias")
    @classmethod
    def _token_ids_and_bounds(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        if bias and len(bias) > MAX_LOGIT_BIAS:  # each entry is work on every decode step of the request
            raise ValueError(f"at most {MAX_LOGIT_BIAS} tokens may be biased, got {len(bias)}")
        for key, value in (bias or {}).items():
            if not key.strip().isdigit():
                raise ValueError(f"keys must be token ids, got {key!r}")
            if not -100 <= value <= 100:
                raise ValueError(f"the bias of token {key} must be between -100 and 100, got {value}")
        return bias

    def top_logprobs_wanted(self) -> int | None:
        """None: no logprobs; k: the chosen tokens' logprobs and the k most likely at each step."""
        return None

    @model_validator(mode="after")
    def _refuse_unimplemented(self) -> GenerationBody:
        for name, neutral in NEUTRAL_VALUES.items():
            if name in type(self).model_fields and getattr(self, name) not in neutral:
                raise unsupported(name, WHAT.get(name, f"`{name}`"))
        if self.n != 1:
            raise unsupported("n", "n other than 1 (one choice per request)")
        return self

    def sampling(self, max_tokens: int | None) -> SamplingParams:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        greedy = self.top_p == 0  # OpenAI allows top_p 0: only the most likely token
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=0.0 if greedy else (1.0 if self.temperature is None else self.temperature),
            top_p=1.0 if self.top_p is None or greedy else self.top_p,
            stop=stop,
            seed=self.seed,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            logit_bias=tuple((int(token), float(bias)) for token, bias in (self.logit_bias or {}).items()),
            logprobs=self.top_logprobs_wanted(),
        )
        params.validate()
        return params


class CompletionBody(GenerationBody):
    prompt: str | list[str] | list[int]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for completions
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)  # OpenAI's legacy limit: the k most likely tokens, k <= 5

    @field_validator("max_tokens")
    @classmethod
    def _null_is_the_default(cls, max_tokens: int | None) -> int:
        return 16 if max_tokens is None else max_tokens  # OpenAI: "integer or null, defaults to 16"

    def top_logprobs_wanted(self) -> int | None:
        return self.logprobs


# OpenAI's chat roles this server renders; anything else (a typo) is a 400. "tool": see structured.tool_format.
ChatRole = Literal["system", "developer", "user", "assistant", "tool"]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"]  # image_url / input_audio / file parts: this server serves text models only
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: ChatRole
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallIn] | None = None  # an assistant turn that called tools
    tool_call_id: str | None = None  # a tool turn: the call it answers
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""

    def template_role(self) -> str:
        return "system" if self.role == "developer" else self.role  # OpenAI's newer name for the system role

    def template_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.template_role(), "content": self.text()}
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.role == "tool":
            out.update(tool_call_id=self.tool_call_id, name=self.name)
        return out


class ChatBody(GenerationBody):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _top_logprobs_needs_logprobs(self) -> ChatBody:
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequestError("top_logprobs needs logprobs: true", code="invalid_value", param="top_logprobs")
        return self

    def top_logprobs_wanted(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    @model_validator(mode="after")
    def _check_tools(self) -> ChatBody:
        names = [t.function.name for t in self.tools or []]
        if len(set(names)) != len(names):
            raise InvalidRequestError("tools: function names must be unique", code="invalid_value", param="tools")
        choice = self.tool_choice
        if choice not in (None, "none") and not names:
            raise InvalidRequestError("tool_choice needs `tools`", code="invalid_value", param="tool_choice")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise InvalidRequestError(
                f"tool_choice names the function {choice.function.name!r}, which is not in `tools`",
                code="invalid_value",
                param="tool_choice",
            )
        called: set[str] = set()
        for i, m in enumerate(self.messages):
            called.update(c.id for c in m.tool_calls or [])
            if m.role == "tool" and m.tool_call_id not in called:
                raise InvalidRequestError(
                    "messages with role 'tool' must answer a tool call (tool_call_id) of an earlier assistant message",
                    code="invalid_value",
                    param=f"messages[{i}].tool_call_id",
                )
        return self


class AdapterBody(BaseModel):
    # vLLM's runtime LoRA API names (lora_name, lora_path) are accepted too.
    model: str = Field(validation_alias=AliasChoices("model", "lora_name", "adapter_id"))
    path: str | None = Field(None, validation_alias=AliasChoices("path", "lora_path"))


def error_body(message: str, type_: str, code: str | int | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# OpenAI's string codes for the HTTP errors that do not come from the engine.
HTTP_ERROR_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "insufficient_permissions",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    429: "rate_limit_exceeded",
}


UNION_TAGS = {"str", "int", "float", "bool", "none", "dict"}


def openai_param(loc: tuple | list) -> str | None:
    """pydantic's error location ('body', 'messages', 0, 'content') as OpenAI writes it: messages[0].content.
    Union branch tags pydantic adds ('str', 'list[ContentPart]') are not fields and are left out."""
    text = ""
    for part in list(loc)[1:]:
        if isinstance(part, str) and (part in UNION_TAGS or "[" in part):
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def most_specific(errors: list[dict]) -> dict:
    """Of a union's errors, the one that went deepest into the body (the part of `content` at fault, say)."""
    return max(errors, key=lambda error: len(error.get("loc", ())), default={})


def validation_message(error: dict, param: str | None) -> str:
    if error.get("type") == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}"
    if error.get("type") == "literal_error" and param and param.endswith(".type") and "content" in param:
        return f"content part type {error.get('input')!r} is not supported: this server serves text models only"
    return f"invalid request: {param + ': ' if param else ''}{error.get('msg', 'bad body')}"
