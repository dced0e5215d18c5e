"""Uploaded files into raw rows, each with the line (or row number) it came from.

Formats by extension: .jsonl/.ndjson (one object per line), .json (an array of objects), .csv (header row; values
are text and are typed by the schema), .parquet, and .txt/.md (free text split at blank lines into paragraphs;
Markdown code fences stay whole). A problem with the whole file (empty, binary, not UTF-8, not Parquet, unknown
type) raises FileRejected; a problem with one row becomes that row's `error`, so every bad row can be reported.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.datanets.schema import RowSchema
from hub.request_limits import DEFAULT_MAX_DEPTH, json_depth_ok

TEXT_FORMATS = {".txt", ".md", ".markdown"}
FORMATS = {".jsonl", ".ndjson", ".json", ".csv", ".parquet", *TEXT_FORMATS}
SNIFF_BYTES = 8192
MAX_JSON_DEPTH = DEFAULT_MAX_DEPTH  # rows, row files and manifests: no legitimate row nests deeper
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._ -]+")
_FENCE = re.compile(r"^\s*(```|~~~)")

# A huge single cell must reach the row-size check (and get a clear message), not die in the csv module.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class FileRejected(ValueError):
    """The file as a whole cannot be read as rows; the message names the file and says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ParsedRow:
    line: int  # 1-based line of the file where the row starts (row number for .json and .parquet)
    raw: Any = None
    error: str | None = None
    from_strings: bool = False  # CSV: every value is text until the schema types it


def safe_filename(name: str | None) -> str:
    """The uploaded file's base name, reduced to harmless characters; FileRejected if nothing usable is left.

    The name is only ever recorded (blobs are stored by digest), but `../../etc/passwd` must not even look like a
    path in the records."""
    base = re.split(r"[\\/]", name or "")[-1]
    cleaned = _SAFE_CHARS.sub("_", base).strip(" .")
    if not cleaned or cleaned.strip("_") == "":
        raise FileRejected(f"file name {name!r} has no usable name: send a plain name like rows.jsonl")
    return cleaned[:200]


def file_format(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix not in FORMATS:
        raise FileRejected(
            f"{filename}: unsupported file type {suffix or '(none)'}; use one of {', '.join(sorted(FORMATS))}", 415
        )
    return suffix


def parse_file(path: Path, filename: str, schema: RowSchema) -> Iterator[ParsedRow]:
    """Raw rows of the file at `path` (its original, sanitised name is `filename`)."""
    suffix = file_format(filename)
    size = path.stat().st_size
    if size == 0:
        raise FileRejected(f"{filename} is empty (0 bytes): nothing to contribute")
    if suffix == ".parquet":
        yield from _parse_parquet(path, filename)
        return
    _refuse_binary(path, filename)
    if suffix in (".jsonl", ".ndjson"):
        yield from _parse_jsonl(path, filename)
    elif suffix == ".json":
        yield from _parse_json_array(path, filename)
    elif suffix == ".csv":
        yield from _parse_csv(path, filename)
    else:
        yield from _parse_text(path, filename, schema, markdown=suffix != ".txt")


def _refuse_binary(path: Path, filename: str) -> None:
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if b"\x00" in head:
        raise FileRejected(f"{filename} looks like a binary file (it contains NUL bytes), not UTF-8 text")


def _decode_error(filename: str, line: int, err: UnicodeDecodeError) -> FileRejected:
    bad = err.object[err.start : err.start + 1].hex()
    return FileRejected(f"{filename} is not UTF-8 text: invalid byte 0x{bad} on line {line}")


def loads_strict(text: str) -> Any:
    """json.loads without NaN/Infinity and with duplicate keys refused (the last one would silently win)."""

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise ValueError(f"duplicate key {key!r}")
            result[key] = value
        return result

    json_depth_ok(text, MAX_JSON_DEPTH)  # before json.loads, which recurses once per level
    return json.loads(text, parse_constant=no_constants, object_pairs_hook=pairs)


def _parse_jsonl(path: Path, filename: str) -> Iterator[ParsedRow]:
    with path.open("rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            try:
                text = raw_line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise _decode_error(filename, number, err) from None
            if number == 1:
                text = text.removeprefix("\ufeff")
            if not text.strip():
                continue
            try:
                yield ParsedRow(number, loads_strict(text))
            except ValueError as err:
                yield ParsedRow(number, error=f"not valid JSON: {err}")


def _read_text(path: Path, filename: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise _decode_error(filename, line, err) from None


def _parse_json_array(path: Path, filename: str) -> Iterator[ParsedRow]:
    text = _read_text(path, filename)
    try:
        items = loads_strict(text)
    except ValueError as err:
        raise FileRejected(f"{filename} is not valid JSON: {err}") from None
    if not isinstance(items, list):
        raise FileRejected(f"{filename}: a .json upload must be an array of row objects (or use .jsonl)")
    for number, item in enumerate(items, start=1):
        yield ParsedRow(number, item)


def _parse_csv(path: Path, filename: str) -> Iterator[ParsedRow]:
    with path.open("r", encoding="utf-8-sig", errors="strict", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise FileRejected(f"{filename} has no header row")
            duplicated = sorted({name for name in header if header.count(name) > 1})
            if duplicated:
                raise FileRejected(f"{filename}: duplicate column(s) {', '.join(duplicated)} in the header")
            previous_end = reader.line_num
            for cells in reader:
                start, previous_end = previous_end + 1, reader.line_num
                if not cells or all(cell == "" for cell in cells):
                    continue
                if len(cells) != len(header):
                    yield ParsedRow(start, error=f"has {len(cells)} values for {len(header)} columns")
                    continue
                yield ParsedRow(start, dict(zip(header, cells, strict=True)), from_strings=True)
        except UnicodeDecodeError as err:
            raise FileRejected(f"{filename} is not UTF-8 text: invalid byte near line {reader.line_num + 1}") from err
        except csv.Error as err:
            raise FileRejected(f"{filename}: CSV error on line {reader.line_num}: {err}") from None


def _parse_parquet(path: Path, filename: str) -> Iterator[ParsedRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise FileRejected(f"{filename} is not a readable Parquet file: {err}") from None
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                number += 1
                yield ParsedRow(number, row)
    except (pa.ArrowException, OSError) as err:
        raise FileRejected(f"{filename}: Parquet data is corrupt after row {number}: {err}") from None


def split_paragraphs(text: str, *, markdown: bool) -> Iterator[tuple[int, str]]:
    """(first line number, paragraph) for each blank-line separated block; Markdown code fences are kept whole."""
    block: list[str] = []
    start = 0
    fenced = False
    for number, line in enumerate(io.StringIO(text), start=1):
        if markdown and _FENCE.match(line):
            fenced = not fenced
        if not line.strip() and not fenced:
            if block:
                yield start, "".join(block).strip()
                block = []
            continue
        if not block:
            start = number
        block.append(line)
    if block:
        yield start, "".join(block).strip()


def _parse_text(path: Path, filename: str, schema: RowSchema, *, markdown: bool) -> Iterator[ParsedRow]:
    text_fields = [field.name for field in schema.fields if field.type == "str" and not field.optional]
    if len(schema.fields) != 1 or len(text_fields) != 1:
        raise FileRejected(
            f"{filename}: text files become rows of one text field, but this datanet's schema is "
            f"{json.dumps(schema.to_json())}; upload JSONL, CSV or Parquet instead"
        )
    text = _read_text(path, filename)
    for line, paragraph in split_paragraphs(text, markdown=markdown):
        yield ParsedRow(line, {text_fields[0]: paragraph})
