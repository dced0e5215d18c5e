"""How tools, tool calls and tool results are written into the prompt, and how a model writes a tool call.

The prompt goes through the base model's chat template, which may know nothing of tools (SmolLM2's and the tiny
test model's do not), so this server writes them as plain text in the roles every template has (Hermes / Qwen
style, which many instruction-tuned models have seen):

- the tools: a system message (before the request's own system text) listing each function as OpenAI's JSON and
  saying how to call one;
- a call, in an assistant turn and in the model's answer: one block per call,
  `<tool_call>\\n{"name": "NAME", "arguments": {...}}\\n</tool_call>` (blocks separated by a newline);
- a `role: "tool"` message: a user turn `<tool_response>\\n{"tool_call_id": ..., "name": ..., "content": ...}
  \\n</tool_response>`.
"""

from __future__ import annotations

import json
from typing import Any

CALL_OPEN = "<tool_call>"
CALL_PREFIX = CALL_OPEN + '\n{"name": "'  # what the grammar forces after the trigger, up to the function's name
ARGS_PREFIX = '", "arguments": '
CALL_END = "}\n</tool_call>"
CALL_SEPARATOR = "\n"


def call_text(name: str, arguments: str) -> str:
    """One call as the model writes it; `arguments` is the JSON text of the arguments object."""
    return f"{CALL_PREFIX}{name}{ARGS_PREFIX}{arguments}{CALL_END}"


def tools_system_text(tools: list[dict[str, Any]]) -> str:
    listed = "\n".join(json.dumps(tool, separators=(", ", ": ")) for tool in tools)
    return (
        "You can call the following functions (tools); each is given with the JSON schema of its arguments:\n"
        f"<tools>\n{listed}\n</tools>\n"
        "To call a function, answer with one block per call, exactly:\n"
        f'{CALL_OPEN}\n{{"name": "<function name>", "arguments": <the arguments as a JSON object>}}\n</tool_call>'
    )


def render_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    """OpenAI chat messages (roles already mapped for the template; assistant `tool_calls`, `role: "tool"`) as the
    {role, content} list the chat template renders."""
    out: list[dict[str, str]] = []
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "tool":
            result = {"tool_call_id": message.get("tool_call_id"), "name": message.get("name"), "content": content}
            out.append({"role": "user", "content": f"<tool_response>\n{json.dumps(result)}\n</tool_response>"})
            continue
        calls = message.get("tool_calls") or []
        if calls:
            blocks = [call_text(c["function"]["name"], c["function"]["arguments"]) for c in calls]
            content = (content + "\n" if content else "") + CALL_SEPARATOR.join(blocks)
        out.append({"role": role, "content": content})
    if tools:
        block = tools_system_text(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": block + "\n\n" + out[0]["content"]}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out
