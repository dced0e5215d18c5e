"""Request bodies of the OpenLoRA API (OpenAI's fields; unknown OpenAI fields are accepted and ignored) and its
error shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from hub.openlora.errors import InvalidRequestError
from hub.openlora.sampling import SamplingParams


# -- request bodies -------------------------------------------------------------------------------------------
class StreamOptions(BaseModel):
    include_usage: bool = False


class GenerationBody(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown OpenAI fields are accepted and ignored

    model: str
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    attribution: bool = True  # ours: false skips Proof of Attribution (the contributors' pool goes unattributed)

    def sampling(self, max_tokens: int | None) -> SamplingParams:
        if self.n != 1:
            raise InvalidRequestError("only n=1 is supported")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            stop=stop,
            seed=self.seed,
        )
        params.validate()
        return params


class CompletionBody(GenerationBody):
    prompt: str | list[str] | list[int]
    max_tokens: int | None = 16  # OpenAI's default for completions
    echo: bool = False
    logprobs: int | None = None


# OpenAI's chat roles that a chat template can render; anything else (a typo, "tool" without tools) is a 400.
ChatRole = Literal["system", "developer", "user", "assistant"]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: ChatRole
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""

    def template_role(self) -> str:
        return "system" if self.role == "developer" else self.role  # OpenAI's newer name for the system role


class ChatBody(GenerationBody):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool | None = None


class AdapterBody(BaseModel):
    # vLLM's runtime LoRA API names (lora_name, lora_path) are accepted too.
    model: str = Field(validation_alias=AliasChoices("model", "lora_name", "adapter_id"))
    path: str | None = Field(None, validation_alias=AliasChoices("path", "lora_path"))


def error_body(message: str, type_: str, code: str | int | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
