"""What a caller sends to create or change a datanet, validated by pydantic (errors come back as 422 with the field)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

from hub.datanets.licenses import canonical_license
from hub.datanets.models import Approval, Visibility
from hub.datanets.schema import RowSchema, SchemaError
from hub.input_rules import SafeLine, SafeText, check_text

NAME_RULES = "3-64 characters: lower-case letters, digits and single hyphens, starting with a letter"
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_TAG = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,31}$")
_USER = re.compile(r"^[^\s/\\\x00-\x1f]{1,255}$")
MAX_TAGS = 16
MAX_PEOPLE = 1000


def check_name(name: str) -> str:
    if not (3 <= len(name) <= 64 and _NAME.fullmatch(name)):
        raise ValueError(f"datanet name {name!r} is invalid: {NAME_RULES}")
    return name


def _people(names: list[str]) -> list[str]:
    if len(names) > MAX_PEOPLE:
        raise ValueError(f"at most {MAX_PEOPLE} names")
    for name in names:
        if not _USER.fullmatch(name):
            raise ValueError(f"{name!r} is not a hub user name")
        check_text(name, "a member name")
    return sorted(set(names))


class MembersSpec(BaseModel):
    members: list[str] = []
    validators: list[str] = []

    _check_people = field_validator("members", "validators")(_people)


class DatanetSpec(MembersSpec):
    name: str
    summary: SafeLine = Field("", max_length=300)
    description: SafeText = Field("", max_length=100_000)
    tags: list[str] = []
    license: str = "CC-BY-4.0"
    row_schema: dict[str, str] | str = Field("text", alias="schema")
    visibility: Visibility = Visibility.PUBLIC
    approval: Approval = Approval.OWNER

    model_config = {"populate_by_name": True}

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        tags = sorted({tag.strip().lower() for tag in value if tag.strip()})
        if len(tags) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags")
        bad = [tag for tag in tags if not _TAG.fullmatch(tag)]
        if bad:
            raise ValueError(f"tags {bad} are invalid: up to 32 lower-case letters, digits, '+', '.' or '-'")
        return tags

    @field_validator("license")
    @classmethod
    def _license(cls, value: str) -> str:
        spdx = canonical_license(value)
        if spdx is None:
            raise ValueError(f"{value!r} is not a known SPDX license id (e.g. CC-BY-4.0, CC0-1.0, Apache-2.0, MIT)")
        return spdx

    @field_validator("row_schema")
    @classmethod
    def _schema(cls, value: Any) -> dict[str, str]:
        try:
            return RowSchema.parse(value).to_json()
        except SchemaError as err:
            raise ValueError(str(err)) from None


class Review(BaseModel):
    reason: SafeText = Field("", max_length=2000)
