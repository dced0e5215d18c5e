"""Which JSON schemas structured output accepts: a valid schema (checked with `jsonschema`) using only keywords the
grammar really enforces. The grammar library compiles some keywords without enforcing them (`uniqueItems`, `not`,
`multipleOf`, `if`/`then`, `patternProperties`, `oneOf`'s "exactly one", ...); a schema using one would get output
that may not validate, so it is refused with a 400 naming the keyword and where it is, before any generation."""

from __future__ import annotations

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
