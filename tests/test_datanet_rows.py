"""Row canonicalisation and hashes, schemas and their validation, and parsing each upload format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from eth_hash.auto import keccak

from hub.datanets.parsing import FileRejected, parse_file, safe_filename, split_paragraphs
from hub.datanets.schema import RowError, RowSchema, SchemaError
from openledger_sdk.datanets import CanonicalError, canonical_json, data_fields, row_hash

QA = RowSchema.parse({"prompt": "str", "response": "str"})
TEXT = RowSchema.parse("text")


# --- canonical JSON and hashes ---------------------------------------------------------------------------------------


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_json({"b": 1, "a": "x"}) == b'{"a":"x","b":1}'


def test_hash_is_keccak_of_canonical_json_and_stable() -> None:
    row = {"response": "Paris", "prompt": "Capital of France?"}
    assert row_hash(row) == keccak(b'{"prompt":"Capital of France?","response":"Paris"}')
    # A fixed vector: changing the canonical form breaks every published root, so it must never change silently.
    assert row_hash(row).hex() == keccak(b'{"prompt":"Capital of France?","response":"Paris"}').hex()
    assert row_hash(dict(reversed(list(row.items())))) == row_hash(row)


def test_unicode_is_utf8_not_escaped_and_nfc_normalised() -> None:
    composed, decomposed = {"text": "caf\u00e9"}, {"text": "cafe\u0301"}
    assert canonical_json(composed) == '{"text":"café"}'.encode()
    assert row_hash(composed) == row_hash(decomposed)


def test_nulls_and_snapshot_columns_do_not_change_the_hash() -> None:
    row = {"prompt": "p", "response": "r"}
    assert row_hash({**row, "score": None}) == row_hash(row)
    snapshot_row = {**row, "_row_id": 7, "_contributor": "0x" + "11" * 20, "_row_hash": "0x00"}
    assert row_hash(data_fields(snapshot_row)) == row_hash(row)


def test_numbers_keep_their_type() -> None:
    assert canonical_json({"n": 1}) != canonical_json({"n": 1.0})
    assert canonical_json({"n": True}) == b'{"n":true}'
    with pytest.raises(CanonicalError):
        canonical_json({"n": float("nan")})


def test_lone_surrogates_have_no_canonical_form() -> None:
    with pytest.raises(CanonicalError):
        canonical_json({"text": "\ud800"})


# --- schemas -------------------------------------------------------------------------------------------------------


def test_schema_forms() -> None:
    assert TEXT.to_json() == {"text": "str"} and TEXT.is_free_text
    schema = RowSchema.parse({"prompt": "str", "score": "float?", "n": int})
    assert schema.to_json() == {"prompt": "str", "score": "float?", "n": "int"}


@pytest.mark.parametrize(
    "spec",
    [{}, {"_private": "str"}, {"a b": "str"}, {"x": "list"}, "prompt/response", {"x\n": "str"}, {"x": "str??"}],
)
def test_bad_schemas_are_refused(spec: object) -> None:
    with pytest.raises(SchemaError):
        RowSchema.parse(spec)


def test_coerce_accepts_a_valid_row() -> None:
    assert QA.coerce({"prompt": "hi", "response": "hello"}) == {"prompt": "hi", "response": "hello"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"prompt": "hi"}, "missing field 'response'"),
        ({"prompt": "hi", "response": "x", "extra": 1}, "unexpected field(s) 'extra'"),
        ({"prompt": "hi", "response": 3}, "must be text"),
        ({"prompt": "  ", "response": "x"}, "is empty"),
        ({"prompt": "a\x00b", "response": "x"}, "NUL"),
        ({"prompt": "hi", "response": "x", "bad\x07key": "y"}, "control character (U+0007)"),
        (["prompt", "response"], "must be an object"),
    ],
)
def test_coerce_names_the_problem(raw: object, message: str) -> None:
    with pytest.raises(RowError, match=re.escape(message)):
        QA.coerce(raw)


def test_types_and_optional_fields() -> None:
    schema = RowSchema.parse({"q": "str", "n": "int", "score": "float?", "ok": "bool"})
    assert schema.coerce({"q": "a", "n": 2.0, "ok": False}) == {"q": "a", "n": 2, "ok": False}
    assert schema.coerce({"q": "a", "n": "7", "score": "0.5", "ok": "yes"}, from_strings=True) == {
        "q": "a",
        "n": 7,
        "score": 0.5,
        "ok": True,
    }
    assert "score" not in schema.coerce({"q": "a", "n": "1", "score": "", "ok": "no"}, from_strings=True)
    for bad in ({"q": "a", "n": True, "ok": True}, {"q": "a", "n": 2**70, "ok": True}, {"q": "a", "n": "1", "ok": 1}):
        with pytest.raises(RowError):
            schema.coerce(bad)


# --- parsing -------------------------------------------------------------------------------------------------------


def _rows(path: Path, schema: RowSchema = QA) -> list:
    return list(parse_file(path, path.name, schema))


def test_jsonl_reports_bad_lines_by_number(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n\n{not json}\n{"prompt": "c", "response": NaN}\n')
    rows = _rows(path)
    assert [(r.line, r.error is None) for r in rows] == [(1, True), (3, False), (4, False)]
    assert rows[0].raw == {"prompt": "a", "response": "b"}


def test_jsonl_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "a", "prompt": "b", "response": "c"}\n')
    assert "duplicate key" in _rows(path)[0].error


def test_json_array(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"prompt": "a", "response": "b"}, {"prompt": "c", "response": "d"}]))
    assert [r.line for r in _rows(path)] == [1, 2]
    path.write_text('{"prompt": "a"}')
    with pytest.raises(FileRejected, match="array"):
        _rows(path)


def test_csv_with_bom_quotes_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('\ufeffprompt,response\na,b\n"multi\nline",c\n\nd,e,f\n', encoding="utf-8")
    rows = _rows(path)
    assert [r.line for r in rows] == [2, 3, 6]
    assert rows[1].raw == {"prompt": "multi\nline", "response": "c"} and rows[1].from_strings
    assert "3 values for 2 columns" in rows[2].error


def test_csv_duplicate_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("prompt,prompt\na,b\n")
    with pytest.raises(FileRejected, match="duplicate column"):
        _rows(path)


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"prompt": ["a", "c"], "response": ["b", "d"]}).to_parquet(path, index=False)
    assert [r.raw for r in _rows(path)] == [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": "d"}]
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(FileRejected, match="not a readable Parquet file"):
        _rows(path)


def test_text_splits_into_paragraphs(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("First para\nstill first.\n\n\nSecond.\n")
    assert [(r.line, r.raw) for r in _rows(path, TEXT)] == [
        (1, {"text": "First para\nstill first."}),
        (5, {"text": "Second."}),
    ]


def test_markdown_keeps_code_fences_whole() -> None:
    text = "# Title\n\n```python\nx = 1\n\ny = 2\n```\n\nAfter.\n"
    assert [p for _, p in split_paragraphs(text, markdown=True)] == [
        "# Title",
        "```python\nx = 1\n\ny = 2\n```",
        "After.",
    ]


def test_text_needs_a_single_text_field(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("hello\n")
    with pytest.raises(FileRejected, match="one text field"):
        _rows(path, QA)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.jsonl", b"", "empty"),
        ("binary.txt", b"\x00\x01\x02\xff\xfe", "binary"),
        ("latin1.txt", "caf\u00e9\n".encode("latin-1"), "not UTF-8 text: invalid byte 0xe9 on line 1"),
        ("latin1.csv", "text\ncaf\u00e9\n".encode("latin-1"), "not UTF-8"),
        ("latin1.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "line 2"),
        ("rows.exe", b"MZ", "unsupported file type"),
    ],
)
def test_whole_file_problems(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(FileRejected, match=message) as caught:
        _rows(path, TEXT)
    assert name.split(".")[0] in str(caught.value)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("rows.jsonl", "rows.jsonl"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\x.csv", "x.csv"),
        ("a b$(c).txt", "a b_c_.txt"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


@pytest.mark.parametrize("name", ["", "..", "../", "/", "...", "$$$"])
def test_unusable_filenames_are_refused(name: str) -> None:
    with pytest.raises(FileRejected):
        safe_filename(name)
