"""JSON schemas for structured-output tests and the grammar benchmark: nested objects, arrays, enums, numbers with
ranges, required and optional fields, string patterns and lengths, anyOf, $ref/$defs, nullable fields.

Strings, arrays and integers are bounded (maxLength, maxItems, minimum/maximum) so that a tiny *random* model,
which the grammar forces into valid JSON but never towards the end of a free string, finishes well within the
token budget: a grammar guarantees validity, not brevity.
"""

from __future__ import annotations

from typing import Any

NAME = {"type": "string", "maxLength": 12}
SCHEMAS: dict[str, dict[str, Any]] = {
    "flat_required": {
        "type": "object",
        "properties": {"name": NAME, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    "boolean_flag": {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    },
    "enum_string": {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]}},
        "required": ["color"],
        "additionalProperties": False,
    },
    "enum_mixed_types": {
        "type": "object",
        "properties": {"level": {"enum": [1, 2, 3, "max", None]}},
        "required": ["level"],
        "additionalProperties": False,
    },
    "const_field": {
        "type": "object",
        "properties": {"kind": {"const": "invoice"}, "id": {"type": "integer", "minimum": 1, "maximum": 9999}},
        "required": ["kind", "id"],
        "additionalProperties": False,
    },
    "integer_range": {
        "type": "object",
        "properties": {"score": {"type": "integer", "minimum": -5, "maximum": 5}},
        "required": ["score"],
        "additionalProperties": False,
    },
    "number_range": {
        "type": "object",
        "properties": {"ratio": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["ratio"],
        "additionalProperties": False,
    },
    "nested_object": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "name": NAME,
                    "address": {
                        "type": "object",
                        "properties": {"city": NAME, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                        "required": ["city", "zip"],
                        "additionalProperties": False,
                    },
                },
                "required": ["name", "address"],
                "additionalProperties": False,
            }
        },
        "required": ["user"],
        "additionalProperties": False,
    },
    "array_of_ints": {
        "type": "object",
        "properties": {
            "values": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 99},
                "minItems": 1,
                "maxItems": 4,
            }
        },
        "required": ["values"],
        "additionalProperties": False,
    },
    "array_of_objects": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "properties": {
                        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
                        "qty": {"enum": [1, 2]},
                    },
                    "required": ["sku", "qty"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["items"],
        "additionalProperties": False,
    },
    "top_level_array": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2, "maxItems": 3},
    "string_pattern_date": {
        "type": "object",
        "properties": {"date": {"type": "string", "pattern": "^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9])$"}},
        "required": ["date"],
        "additionalProperties": False,
    },
    "string_lengths": {
        "type": "object",
        "properties": {"code": {"type": "string", "minLength": 2, "maxLength": 4}},
        "required": ["code"],
        "additionalProperties": False,
    },
    "optional_fields": {
        "type": "object",
        "properties": {"title": NAME, "subtitle": NAME, "pages": {"type": "integer", "minimum": 1, "maximum": 50}},
        "required": ["title"],
        "additionalProperties": False,
    },
    "nullable_field": {
        "type": "object",
        "properties": {"note": {"type": ["string", "null"], "maxLength": 8}},
        "required": ["note"],
        "additionalProperties": False,
    },
    "any_of_shapes": {
        "type": "object",
        "properties": {
            "shape": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"circle": {"type": "integer", "minimum": 1, "maximum": 9}},
                        "required": ["circle"],
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "properties": {"square": {"type": "integer", "minimum": 1, "maximum": 9}},
                        "required": ["square"],
                        "additionalProperties": False,
                    },
                ]
            }
        },
        "required": ["shape"],
        "additionalProperties": False,
    },
    "refs_and_defs": {
        "$defs": {
            "point": {
                "type": "object",
                "properties": {
                    "x": {"type": "integer", "minimum": 0, "maximum": 9},
                    "y": {"type": "integer", "minimum": 0, "maximum": 9},
                },
                "required": ["x", "y"],
                "additionalProperties": False,
            }
        },
        "type": "object",
        "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}},
        "required": ["start", "end"],
        "additionalProperties": False,
    },
    "array_of_enums_unique_shape": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"enum": ["news", "sport", "tech"]}, "maxItems": 3},
            "lang": {"enum": ["en", "fr"]},
        },
        "required": ["tags", "lang"],
        "additionalProperties": False,
    },
    "deeply_nested": {
        "type": "object",
        "properties": {
            "a": {
                "type": "object",
                "properties": {
                    "b": {
                        "type": "object",
                        "properties": {"c": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2}},
                        "required": ["c"],
                        "additionalProperties": False,
                    }
                },
                "required": ["b"],
                "additionalProperties": False,
            }
        },
        "required": ["a"],
        "additionalProperties": False,
    },
    "weather_tool_args": {
        "type": "object",
        "properties": {
            "city": NAME,
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "unit", "days"],
        "additionalProperties": False,
    },
    "email_like": {
        "type": "object",
        "properties": {"email": {"type": "string", "pattern": "^[a-z]{1,6}@[a-z]{1,6}\\.(com|org)$"}},
        "required": ["email"],
        "additionalProperties": False,
    },
    "matrix": {
        "type": "object",
        "properties": {
            "rows": {
                "type": "array",
                "minItems": 1,
                "maxItems": 2,
                "items": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 2,
                    "items": {"type": "integer", "minimum": 0, "maximum": 9},
                },
            }
        },
        "required": ["rows"],
        "additionalProperties": False,
    },
}
