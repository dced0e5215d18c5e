"""Structured output for /v1/chat/completions: from the request's `response_format` / `tools` / `tool_choice` to
the prompt messages and the grammar that constrains the answer, and from the answer back to the message (or the
stream's deltas) with `tool_calls`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.openlora.errors import InvalidRequestError
from hub.openlora.structured.grammars import CompiledGrammar, compiler_for
from hub.openlora.structured.schema_check import check_schema
from hub.openlora.structured.tool_format import render_messages
from hub.openlora.structured.tool_parser import Delta, ToolCallParser, delta_json, parse_answer


@dataclass(frozen=True)
class ChatStructure:
    grammar: CompiledGrammar | None = None
    calls_tools: bool = False  # tools offered: the answer is read for tool calls

    def message(self, text: str, finish_reason: str) -> tuple[dict[str, Any], str]:
        """The response's `message` and `finish_reason` for a whole answer."""
        if not self.calls_tools:
            return {"role": "assistant", "content": text}, finish_reason
        content, calls, finish_reason = parse_answer(text, finish_reason)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        return message, finish_reason

    def stream(self) -> StreamDeltas:
        return StreamDeltas(ToolCallParser() if self.calls_tools else None)


class StreamDeltas:
    """Text pieces of a streamed answer -> chat chunk deltas (content, or tool call headers and argument pieces)."""

    def __init__(self, parser: ToolCallParser | None) -> None:
        self._parser = parser

    def feed(self, text: str) -> list[dict[str, Any]]:
        if self._parser is None:
            return [{"content": text}] if text else []
        return [delta_json(d) for d in self._parser.feed(text)]

    def finish(self, finish_reason: str) -> tuple[list[dict[str, Any]], str]:
        if self._parser is None:
            return [], finish_reason
        deltas: list[Delta] = self._parser.finish()
        if self._parser.calls and finish_reason == "stop":
            finish_reason = "tool_calls"
        return [delta_json(d) for d in deltas], finish_reason


def prepare_chat(body: Any, engine: Any) -> tuple[list[dict[str, str]], ChatStructure]:
    """The messages for the chat template and the answer's structure (grammar, tool parsing). Compiles schemas:
    call it off the event loop. Raises InvalidRequestError (400 naming the field) for what cannot be served."""
    messages = [m.template_dict() for m in body.messages]
    tools = [t.model_dump(exclude_none=True) for t in body.tools or []]
    choice = body.tool_choice if body.tool_choice is not None else ("auto" if tools else "none")
    fmt = body.response_format
    compiler = None
    if tools and choice != "none":
        if fmt is not None and fmt.type != "text":
            raise InvalidRequestError(
                "response_format cannot be combined with tools on this server: use tool_choice 'none' or drop one",
                code="unsupported_parameter",
                param="response_format",
            )
        functions = [t["function"] for t in tools]
        for i, f in enumerate(functions):
            if "parameters" in f:
                check_schema(f["parameters"], f"tools[{i}].function.parameters")
        parallel = body.parallel_tool_calls is not False
        if not isinstance(choice, str):  # a named function: that call and nothing else
            functions = [f for f in functions if f["name"] == choice.function.name]
            choice, parallel = "required", False
        compiler = compiler_for(engine)
        grammar = compiler.tool_calls(functions, choice, parallel)
        return render_messages(messages, tools), ChatStructure(grammar, calls_tools=True)
    rendered = render_messages(messages, None)
    if fmt is None or fmt.type == "text":
        return rendered, ChatStructure()
    compiler = compiler_for(engine)
    if fmt.type == "json_object":
        return rendered, ChatStructure(compiler.json_object())
    spec = fmt.json_schema
    if spec is None:
        raise InvalidRequestError(
            "response_format of type json_schema needs a json_schema object",
            code="invalid_value",
            param="response_format.json_schema",
        )
    param = "response_format.json_schema.schema"
    check_schema(spec.schema_, param)
    return rendered, ChatStructure(compiler.json_schema(spec.schema_, param))
