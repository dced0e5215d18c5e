"""Which JSON schemas structured output accepts: a valid schema (checked with `jsonschema`) using only keywords the
grammar really enforces. The grammar library compiles some keywords without enforcing them (`uniqueItems`, `not`,
`multipleOf`, `if`/`then`, `patternProperties`, `oneOf`'s "exactly one", ...); a schema using one would get output
that may not validate, so it is refused with a 400 naming the keyword and where it is, before any generation."""

from __future__ import annotations

import re
from typing import Any

import jsonschema

from hub.openlora.errors import InvalidRequestError

ENFORCED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "definitions",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minProperties",
        "maxProperties",
        "format",
    }
)
# Annotations: they describe, never constrain, so the grammar has nothing to enforce.
ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly"}
)
FORMATS = frozenset({"date", "time", "date-time", "email", "uuid", "ipv4", "ipv6", "uri", "hostname"})
SCHEMA_MAPS = ("properties", "$defs", "definitions")  # keyword -> {name: schema}
MAX_PATTERN_COST = 1000  # a{3000} took 1.2 s to compile: a pattern's expanded size is bounded before compiling
MAX_SCHEMA_DEPTH = 16  # OpenAI allows 10 levels of object nesting in a strict schema


def check_schema(schema: Any, param: str) -> None:
    """Raise InvalidRequestError (naming `param`) unless `schema` is a valid JSON schema the grammar enforces fully."""
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"{param} must be a JSON schema object", code="invalid_value", param=param)
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise InvalidRequestError(
            f"{param} is not a valid JSON schema at {where}: {exc.message}", code="invalid_value", param=param
        ) from None
    except Exception as exc:  # e.g. an unhashable `$schema`: still the client's schema at fault, never a 500
        raise InvalidRequestError(
            f"{param} is not a valid JSON schema: {exc}", code="invalid_value", param=param
        ) from None
    _walk(schema, param, "#", 0, schema)


def _resolves(root: dict, ref: Any) -> bool:
    """Only references inside the schema itself (`#/$defs/x`): a URL would be a fetch, which is never made."""
    if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
        return False
    node: Any = root
    for part in ref[2:].split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _walk(schema: Any, param: str, where: str, depth: int, root: dict) -> None:
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"{param}: {where} must be a schema object", code="invalid_value", param=param)
    if depth > MAX_SCHEMA_DEPTH:
        raise InvalidRequestError(f"{param}: the schema nests deeper than {MAX_SCHEMA_DEPTH}", param=param)
    for key, value in schema.items():
        if key in ANNOTATIONS:
            continue
        if key not in ENFORCED:
            raise InvalidRequestError(
                f"{param}: the JSON schema keyword `{key}` (at {where}) is not supported for structured output: "
                f"supported are {', '.join(sorted(ENFORCED))}",
                code="unsupported_parameter",
                param=param,
            )
        if key == "$ref" and not _resolves(root, value):
            raise InvalidRequestError(
                f"{param}: $ref {value!r} (at {where}) must point inside the schema (#/$defs/...)",
                code="invalid_value",
                param=param,
            )
        if key == "pattern" and isinstance(value, str) and pattern_cost(value) > MAX_PATTERN_COST:
            raise InvalidRequestError(
                f"{param}: the pattern at {where} repeats too much (expanded size over {MAX_PATTERN_COST}): "
                "use smaller {m,n} counts",
                code="invalid_value",
                param=param,
            )
        if key == "format" and value not in FORMATS:
            raise InvalidRequestError(
                f"{param}: string format {value!r} (at {where}) is not supported: use one of {sorted(FORMATS)}",
                code="unsupported_parameter",
                param=param,
            )
        if key in SCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                _walk(sub, param, f"{where}/{key}/{name}", depth + 1, root)
        elif key in ("items", "additionalProperties") and isinstance(value, dict | bool):
            _walk(value, param, f"{where}/{key}", depth + 1, root)
        elif key in ("prefixItems", "anyOf") and isinstance(value, list):
            for i, sub in enumerate(value):
                _walk(sub, param, f"{where}/{key}/{i}", depth + 1, root)


_QUANTIFIER = re.compile(r"\{(\d*)(?:,(\d*))?\}")


def pattern_cost(pattern: str) -> int:
    """About how many regex atoms a pattern expands to (a counted repetition multiplies what it repeats, nested
    groups multiply through): the grammar compiler's work grows with it."""
    stack: list[list[int]] = [[]]  # per open group: the costs of its items so far
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            stack[-1].append(1)
            i += 2
            continue
        if ch == "[":
            end = pattern.find("]", i + 2)
            stack[-1].append(1)
            i = len(pattern) if end < 0 else end + 1
            continue
        if ch == "(":
            stack.append([])
        elif ch == ")" and len(stack) > 1:
            inner = stack.pop()
            stack[-1].append(max(sum(inner), 1))
        elif ch == "{" and (m := _QUANTIFIER.match(pattern, i)) and stack[-1]:
            low, high = int(m.group(1) or 0), m.group(2)
            times = low if high is None else (int(high) if high else low + 1)  # {m}, {m,n}, {m,}
            stack[-1][-1] *= max(times, 1)
            i = m.end()
            continue
        elif ch not in "|^$*+?":
            stack[-1].append(1)
        i += 1
    return sum(sum(level) for level in stack)
