"""Errors a request can end with. Each carries the HTTP status and OpenAI error `type` the API answers with."""

from __future__ import annotations


class EngineError(Exception):
    """Base class: a request failed for a reason the client should see."""

    status_code = 500
    error_type = "server_error"
    code: str | None = None
    param: str | None = None  # the request field at fault, as OpenAI names it
    headers: dict[str, str] | None = None


class ModelNotFoundError(EngineError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist on this server. "
            "GET /v1/models lists the base model and the adapters it serves."
        )
        self.model = model


class InvalidRequestError(EngineError):
    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.code
        self.param = param


class ContextLengthError(InvalidRequestError):
    code = "context_length_exceeded"

    def __init__(self, max_len: int, prompt_tokens: int, max_tokens: int) -> None:
        super().__init__(
            f"This model's maximum context length is {max_len} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, {max_tokens} for the completion). "
            "Please reduce the prompt or max_tokens."
        )


class AdapterLoadError(EngineError):
    """The adapter's files are missing, corrupt or do not fit the base model; only its requests fail."""

    status_code = 500
    error_type = "adapter_error"
    code = "adapter_load_failed"

    def __init__(self, adapter_id: str, reason: str) -> None:
        super().__init__(f"adapter `{adapter_id}` could not be loaded: {reason}")
        self.adapter_id = adapter_id
        self.reason = reason


class EngineOverloadedError(EngineError):
    status_code = 503
    error_type = "server_error"
    code = "queue_full"


class EngineStoppedError(EngineError):
    status_code = 503
    error_type = "server_error"
    code = "engine_stopped"


class RequestCancelledError(EngineError):
    status_code = 499
    error_type = "cancelled"


class InsufficientFundsError(EngineError):
    """The payer's wallet cannot cover what this request may cost: nothing generated. OpenAI's shape for it (HTTP 429,
    type and code `insufficient_quota`), so `openai.RateLimitError` catches it; `x-should-retry: false` keeps the
    openai client from retrying what waiting will not fix."""

    status_code = 429
    error_type = "insufficient_quota"
    code = "insufficient_quota"
    headers = {"x-should-retry": "false"}
