"""Repairs of one input record: decoding, JSON parsing, and cleaning its title and description.

A record becomes (record, repairs, reason, detail): the cleaned record ({"uid", "title", "content"}, plus the
AmazonTitles label lists where present) with the repairs it needed, or None with the reason it is rejected and,
where a parser gave one, its own message. The source's column names are mapped on the canonical names here
(`columns`: canonical -> source name); the reject reasons always use the canonical names (empty_title,
null_content, ...).
"""

from __future__ import annotations

import codecs
import html
import json
import math
import unicodedata

import orjson

from ftpipe.rawdata.html_text import html_text

STANDARD_COLUMNS = {"title": "title", "content": "content", "uid": "uid"}
_encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(x, ensure_ascii=False), one encoder
_CONTROL_CATEGORIES = {"Cc", "Cf", "Cs", "Co"}


def failure_reason(err: Exception) -> str:
    """The reject reason of a line whose parsing or cleaning raised: one line never stops the stage."""
    return "nested_too_deeply" if isinstance(err, RecursionError) else "unreadable_line"


def parse_json_record(raw: bytes, columns: dict = STANDARD_COLUMNS) -> tuple:
    """One JSON text (a line, or an element of an array) as (record, repairs, reason, detail), without
    building an Outcome for every line; `columns` maps the canonical names on the object's keys."""
    try:
        obj = orjson.loads(raw)  # fast path: valid UTF-8, strict JSON
    except orjson.JSONDecodeError:
        return _parse_slowly(raw, columns)
    if obj.__class__ is not dict and not isinstance(obj, dict):
        return None, [], "not_an_object", None
    return (*clean_record(obj, [], columns), None)


def _parse_slowly(raw: bytes, columns: dict) -> tuple:
    """Lines the strict parser refused: bytes that are not UTF-8, raw control characters, NaN, doubled
    quotes, a trailing comma, lone surrogates, deep nesting, or really broken."""
    repairs: list[str] = []
    text = decode_text(raw, repairs)
    if not text.strip():
        return None, repairs, "blank_line", None
    obj, error = _loads(text, repairs)
    if obj is _INVALID:
        return None, repairs, error_reason(text), error
    if not isinstance(obj, dict):
        return None, repairs, "not_an_object", None
    record, repairs, reason = clean_record(obj, repairs, columns)
    if reason is None and not _encodable(record):
        return None, repairs, "lone_surrogate", None  # in a uid or a label: no faithful text to keep
    return record, repairs, reason, None


def decode_text(raw: bytes, repairs: list[str]) -> str:
    """UTF-8 text; bytes that are not UTF-8 are read as Windows-1252 (repair `invalid_utf8`)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        repairs.append("invalid_utf8")
        return raw.decode("utf-8", errors=LEGACY_BYTES)


def error_reason(text: str) -> str:
    """The reject reason of a line that is not JSON even after the repairs."""
    return "array_element_invalid_json" if text.rstrip().endswith(("},", "}]")) else "invalid_json"


def _legacy_bytes(err: UnicodeDecodeError) -> tuple[str, int]:
    """Decode error handler: bytes that are not UTF-8 are read as Windows-1252, what such files usually are
    (as Latin-1 where Windows-1252 leaves a byte undefined), so "Caf\xe9" reads "Café"."""
    return err.object[err.start : err.end].decode("latin-1").translate(_CP1252), err.end


LEGACY_BYTES = "ftpipe-cp1252"
codecs.register_error(LEGACY_BYTES, _legacy_bytes)
_CP1252_UNDEFINED = (0x81, 0x8D, 0x8F, 0x90, 0x9D)
_CP1252 = {byte: bytes([byte]).decode("cp1252") for byte in range(0x80, 0xA0) if byte not in _CP1252_UNDEFINED}
_INVALID = object()  # what _loads returns for text that is not JSON (None is JSON's null)
_LENIENT = json.JSONDecoder(strict=False)  # accepts raw control characters inside strings


def _loads(text: str, repairs: list[str]) -> tuple:
    """(the JSON value of a line, None), or (_INVALID, the parser's message); a CSV round-trip's doubled
    quotes, raw control characters inside strings and the comma after an object cut from a JSON array
    (a line ending in `},`) are repaired."""
    value, error = _loads_lenient(text, repairs)
    stripped = text.strip()
    # A CSV round-trip wraps the line in quotes and doubles every quote inside it.
    if value is _INVALID and stripped.startswith('"') and stripped.endswith('"') and '""' in stripped:
        value, _ = _loads_lenient(stripped[1:-1].replace('""', '"'), repairs)
        _note(repairs, "doubled_quotes", value is not _INVALID)
    # A JSON array cut into lines keeps the comma after each element (and `]` after the last one).
    if value is _INVALID and stripped.endswith(("},", "}]")):
        value, error = _loads_lenient(stripped[:-1], repairs)  # what is wrong besides the comma
        _note(repairs, "array_element_comma", value is not _INVALID)
    return value, (error if value is _INVALID else None)


def _loads_lenient(text: str, repairs: list[str]) -> tuple:
    try:
        return json.loads(text), None
    except json.JSONDecodeError as err:
        error = str(err)
    try:
        value = _LENIENT.decode(text)
    except json.JSONDecodeError:
        return _INVALID, error
    _note(repairs, "control_characters", True)  # only raw control characters separate strict and lenient
    return value, None


def _encodable(record: dict) -> bool:
    try:
        _encode(record).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _field(obj: dict, name: str, repairs: list[str]):
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key in obj:
        if isinstance(key, str) and key.strip().lower() == lowered:
            _note(repairs, "field_name_case", True)
            return obj[key]
    return None


def clean_text(value: str, repairs: list[str]) -> str:
    """Unescape HTML entities, drop markup and control characters, collapse whitespace; note each repair.

    Each step is skipped where it cannot change the text (no `&`, no `<`, all printable and no doubled,
    leading or trailing space), which is most lines."""
    text = value
    if "&" in text:
        for _ in range(3):  # entities are sometimes escaped twice (&amp;#8217;)
            unescaped = html.unescape(text)
            if unescaped == text:
                break
            text = unescaped
        _note(repairs, "html_entities", text != value)
    untagged = text
    if "<" in text:
        untagged = html_text(text)
        _note(repairs, "html_tags", untagged != text)
    printable = untagged
    if untagged.isprintable():
        # A printable text holds no whitespace but " " (str.isprintable excludes every other space character),
        # so str.split() would change it only at a doubled, leading or trailing space.
        if "  " not in untagged and not untagged.startswith(" ") and not untagged.endswith(" "):
            return untagged
    else:
        printable = "".join(
            " " if not ch.isspace() and unicodedata.category(ch) in _CONTROL_CATEGORIES else ch for ch in untagged
        )
        _note(repairs, "control_characters", printable != untagged)
    collapsed = " ".join(printable.split())
    _note(repairs, "whitespace", collapsed != printable)
    return collapsed


def _note(repairs: list[str], reason: str, happened: bool) -> None:
    if happened and reason not in repairs:
        repairs.append(reason)


def _as_list(value, repairs: list[str]):
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        if isinstance(parsed, list):
            _note(repairs, "list_as_string", True)
            return parsed
        return None
    return value if isinstance(value, list) or value is None else None


def clean_record(obj: dict, repairs: list[str], columns: dict = STANDARD_COLUMNS) -> tuple:
    """(the cleaned record, repairs, None), or (None, repairs, the reason it is rejected)."""
    title, reason = _cleaned_field(obj, "title", columns["title"], repairs)
    if reason is not None:
        return None, repairs, reason
    content, reason = _cleaned_field(obj, "content", columns["content"], repairs)
    if reason is not None:
        return None, repairs, reason
    uid = obj.get(columns["uid"]) if columns["uid"] is not None else None
    record = {"uid": str(uid) if uid is not None else "", "title": title, "content": content}
    if "target_ind" in obj:
        record["target_ind"] = _as_list(obj["target_ind"], repairs)
    if "target_rel" in obj:
        record["target_rel"] = _as_list(obj["target_rel"], repairs)
    return record, repairs, None


def _cleaned_field(obj: dict, name: str, source: str, repairs: list[str]) -> tuple[str | None, str | None]:
    """(the cleaned text of field `name`, read from the source's `source`, None), or (None, why the record
    is rejected)."""
    value = _field(obj, source, repairs)
    reason = _text_problem(name, value, source in obj)
    if reason is not None:
        return None, reason
    text = clean_text(value, repairs)
    return (text, None) if text else (None, f"empty_{name}")


def _text_problem(name: str, value, present: bool) -> str | None:
    if value.__class__ is str:
        return None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"null_{name}" if present else f"missing_{name}"
    if not isinstance(value, str):
        return f"{name}_not_text"
    return None
