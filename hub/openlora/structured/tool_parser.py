"""Reading tool calls out of a model's answer as it streams: text in, OpenAI deltas out.

The same parser serves streaming (each text piece as it arrives) and whole answers (one piece), so a stream's deltas
add up to exactly the non-streamed message. A call's header (index, id, name) goes out once its name is complete,
then its arguments in fragments as they arrive; text that may be the start of a call marker, or the end of a call,
is held back until it is known which it is. An answer cut by `max_tokens` inside a call keeps the call with its
arguments so far (finish_reason `length`), as OpenAI does.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from hub.openlora.structured.tool_format import ARGS_PREFIX, CALL_END, CALL_OPEN, CALL_PREFIX


@dataclass
class ToolCall:
    index: int
    id: str
    name: str
    arguments: str = ""


@dataclass
class Delta:
    """One piece of the assistant message: text, a call's start, or a fragment of a call's arguments."""

    content: str | None = None
    call: ToolCall | None = None  # a new call: its header
    call_index: int | None = None
    arguments: str | None = None  # a fragment of calls[call_index]'s arguments


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _held_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper start of `marker` (may become the marker)."""
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


@dataclass
class ToolCallParser:
    buffer: str = ""
    state: str = "text"  # text -> header (reading the name) -> arguments -> text
    calls: list[ToolCall] = field(default_factory=list)
    pending_space: str = ""  # whitespace between calls: content only if more text follows

    def feed(self, text: str) -> list[Delta]:
        self.buffer += text
        out: list[Delta] = []
        progressed = True
        while progressed:
            progressed = getattr(self, f"_in_{self.state}")(out)
        return out

    def finish(self) -> list[Delta]:
        """The end of the answer: release what was held back (a cut call keeps its partial arguments)."""
        out = self.feed("")
        rest, self.buffer = self.buffer, ""
        if (
            self.state == "arguments"
            and rest
            and not (CALL_END.startswith(rest) and _is_json(self.calls[-1].arguments))
        ):
            self._args(out, rest)  # a call cut short: its arguments so far (unless what was held is its end)
        elif self.state == "text":
            self._content(out, rest, final=True)
        return out

    # -- states: each consumes what it can from the buffer; True if another state should run now ------------
    def _in_text(self, out: list[Delta]) -> bool:
        at = self.buffer.find(CALL_OPEN)
        if at < 0:
            keep = _held_suffix(self.buffer, CALL_OPEN)
            self._content(out, self.buffer[: len(self.buffer) - keep])
            self.buffer = self.buffer[len(self.buffer) - keep :]
            return False
        self._content(out, self.buffer[:at])
        self.buffer = self.buffer[at:]
        self.state = "header"
        return True

    def _in_header(self, out: list[Delta]) -> bool:
        if not self.buffer.startswith(CALL_PREFIX[: len(self.buffer)]) and not self.buffer.startswith(CALL_PREFIX):
            self.state = "text"  # a marker without a call after it: plain text after all
            self._content(out, self.buffer[: len(CALL_OPEN)])
            self.buffer = self.buffer[len(CALL_OPEN) :]
            return True
        end = self.buffer.find(ARGS_PREFIX, len(CALL_PREFIX))
        if end < 0:
            return False
        call = ToolCall(len(self.calls), f"call_{uuid.uuid4().hex[:24]}", self.buffer[len(CALL_PREFIX) : end])
        self.calls.append(call)
        self.pending_space = ""
        out.append(Delta(call=call))
        self.buffer = self.buffer[end + len(ARGS_PREFIX) :]
        self.state = "arguments"
        return True

    def _in_arguments(self, out: list[Delta]) -> bool:
        end = self._arguments_end()
        if end is None:
            keep = _held_suffix(self.buffer, CALL_END)
            self._args(out, self.buffer[: len(self.buffer) - keep])
            self.buffer = self.buffer[len(self.buffer) - keep :]
            return False
        self._args(out, self.buffer[:end])
        self.buffer = self.buffer[end + len(CALL_END) :]
        self.state = "text"
        return True

    def _arguments_end(self) -> int | None:
        """Where the call's end marker starts, once the arguments before it are one whole JSON value (a `}` and
        `</tool_call>` inside a JSON string do not end the call)."""
        so_far = self.calls[-1].arguments
        start = 0
        while (at := self.buffer.find(CALL_END, start)) >= 0:
            if _is_json(so_far + self.buffer[:at]):
                return at
            start = at + 1
        return None

    # -- output ----------------------------------------------------------------------------------------------
    def _args(self, out: list[Delta], fragment: str) -> None:
        if fragment:
            call = self.calls[-1]
            call.arguments += fragment
            out.append(Delta(call_index=call.index, arguments=fragment))

    def _content(self, out: list[Delta], text: str, final: bool = False) -> None:
        if not text:
            return
        if self.calls and not text.strip():  # whitespace after a call: hold until real text follows
            self.pending_space += text
            return
        if not final or text.strip() or not self.calls:
            out.append(Delta(content=self.pending_space + text))
        self.pending_space = ""


def parse_answer(text: str, finish_reason: str) -> tuple[str | None, list[dict[str, Any]], str]:
    """A whole answer as (content, tool_calls in OpenAI's shape, finish_reason): `tool_calls` when calls were made
    and the answer ended by itself."""
    parser = ToolCallParser()
    deltas = parser.feed(text) + parser.finish()
    content = "".join(d.content for d in deltas if d.content) or None
    calls = [openai_call(c) for c in parser.calls]
    if calls and finish_reason == "stop":
        finish_reason = "tool_calls"
    return content, calls, finish_reason


def openai_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def delta_json(delta: Delta) -> dict[str, Any]:
    """A chat chunk's `delta` for one parser Delta, as OpenAI streams tool calls."""
    if delta.call is not None:
        c = delta.call
        head = {"index": c.index, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}
        return {"tool_calls": [head]}
    if delta.arguments is not None:
        return {"tool_calls": [{"index": delta.call_index, "function": {"arguments": delta.arguments}}]}
    return {"content": delta.content}
