"""Row schemas: which fields a datanet's rows have, their types, and turning raw input into typed rows.

A schema is `{"field": "str" | "int" | "float" | "bool"}`, a trailing `?` making a field optional
(`"score": "float?"`), or the string "text" for free text (one `text` field; .txt/.md files split into rows).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

TYPES = ("str", "int", "float", "bool")
FREE_TEXT = "text"
MAX_FIELDS = 64
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # snapshots store ints as Parquet int64
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


class SchemaError(ValueError):
    """The schema itself is invalid."""


class RowError(ValueError):
    """One row does not fit the schema; the message names the field."""


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    optional: bool


def _spec_type(spec: Any) -> str:
    # The SDK sends type names; accept Python types too for callers that build the dict by hand.
    return spec.__name__ if isinstance(spec, type) else str(spec)


@dataclass(frozen=True)
class RowSchema:
    fields: tuple[Field, ...]

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | str | None) -> RowSchema:
        """A schema from its JSON form; SchemaError says what is wrong."""
        if spec is None or spec == FREE_TEXT:
            return cls((Field("text", "str", False),))
        if not isinstance(spec, Mapping) or not spec:
            raise SchemaError('schema must be "text" or a non-empty object like {"prompt": "str", "response": "str"}')
        if len(spec) > MAX_FIELDS:
            raise SchemaError(f"schema has {len(spec)} fields; at most {MAX_FIELDS}")
        fields = []
        for name, raw_type in spec.items():
            if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
                raise SchemaError(
                    f"field name {name!r}: use a letter then letters, digits or _ (at most 64; a leading _ is reserved)"
                )
            type_name = _spec_type(raw_type).strip()
            optional = type_name.endswith("?")
            type_name = type_name.removesuffix("?")
            if type_name not in TYPES:
                raise SchemaError(
                    f"field {name!r}: type {raw_type!r} is not one of {', '.join(TYPES)} (add ? if optional)"
                )
            fields.append(Field(name, type_name, optional))
        return cls(tuple(fields))

    @property
    def is_free_text(self) -> bool:
        return len(self.fields) == 1 and self.fields[0] == Field("text", "str", False)

    def to_json(self) -> dict[str, str]:
        return {f.name: f.type + ("?" if f.optional else "") for f in self.fields}

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def coerce(self, raw: Any, *, from_strings: bool = False) -> dict[str, Any]:
        """The typed row for `raw` (a dict from JSON, CSV or Parquet), or RowError listing every problem in it.

        `from_strings`: values come from CSV, so "3" may be an int and an empty cell means missing."""
        if not isinstance(raw, Mapping):
            raise RowError(f"a row must be an object with fields {', '.join(self.names)}, got {type(raw).__name__}")
        problems = [problem for key in raw if (problem := key_problem(key))]
        known = set(self.names)
        unexpected = [key for key in raw if isinstance(key, str) and key not in known and not key_problem(key)]
        if unexpected:
            problems.append(
                f"unexpected field(s) {', '.join(map(repr, unexpected))}; the schema has {', '.join(self.names)}"
            )
        row: dict[str, Any] = {}
        for field in self.fields:
            try:
                value = _coerce_value(field, raw.get(field.name), from_strings)
            except RowError as err:
                problems.append(str(err))
                continue
            if value is not None:
                row[field.name] = value
        if problems:
            raise RowError("; ".join(problems))
        return row


def key_problem(key: Any) -> str | None:
    if not isinstance(key, str):
        return f"field names must be text, got {key!r}"
    return _text_key_problem(key)


@lru_cache(maxsize=4096)  # rows of one upload repeat the same few keys
def _text_key_problem(key: str) -> str | None:
    for char in key:
        if unicodedata.category(char).startswith("C"):
            return f"field name {key!r} contains a control character (U+{ord(char):04X})"
    return None


def _missing(value: Any, from_strings: bool) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):  # pandas' missing value
        return True
    return from_strings and isinstance(value, str) and value == ""


def _integer(value: Any, from_strings: bool) -> int | None:
    if from_strings and isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "item") and isinstance(value.item(), int):  # numpy integers
        return int(value.item())
    return None


def _coerce_value(field: Field, value: Any, from_strings: bool) -> Any:
    if _missing(value, from_strings):
        if field.optional:
            return None
        raise RowError(f"missing field {field.name!r}")
    name = field.name
    if field.type == "str":
        if not isinstance(value, str):
            raise RowError(f"field {name!r} must be text, got {type(value).__name__}")
        if not value.strip():
            if field.optional:
                return None
            raise RowError(f"field {name!r} is empty")
        if "\x00" in value:
            raise RowError(f"field {name!r} contains a NUL character (binary data?)")
        return value
    if field.type == "bool":
        if isinstance(value, bool):
            return value
        if from_strings and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise RowError(f"field {name!r} must be true or false, got {value!r}"[:200])
    if isinstance(value, bool):
        raise RowError(f"field {name!r} must be a number, got {value!r}")
    if field.type == "int":
        number = _integer(value, from_strings)
        if number is None:
            raise RowError(f"field {name!r} must be an integer, got {value!r}"[:200])
        if not INT64_MIN <= number <= INT64_MAX:
            raise RowError(f"field {name!r}: {number} does not fit a 64-bit integer")
        return number
    # float
    try:
        number = float(value.strip() if from_strings and isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise RowError(f"field {name!r} must be a number, got {value!r}"[:200]) from None
    if isinstance(value, str) and not from_strings:
        raise RowError(f"field {name!r} must be a number, got text {value!r}"[:200])
    if not math.isfinite(number):
        raise RowError(f"field {name!r} must be a finite number, got {value!r}")
    return number
