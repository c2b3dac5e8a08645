"""The bad-input corpus (tests/bad_inputs/): every file is repaired, quarantined with its reason, or stopped
with a message naming the file, the line and the problem; the row accounting always adds up."""

import json
from pathlib import Path

import pytest
from prepare import InputError, prepare

from tests.test_prepare import args_for

CORPUS = Path(__file__).parent / "bad_inputs"

# file -> (kept, repaired, rejected reasons, repairs that must appear)
EXPECTED = {
    "truncated_last_line.json": (2, 0, {"invalid_json": 1}, []),
    "doubled_quotes.json": (1, 1, {}, ["doubled_quotes"]),
    "lists_as_strings.json": (1, 1, {}, ["list_as_string"]),
    "empty_and_blank_fields.json": (1, 0, {"empty_title": 2, "empty_content": 2}, []),
    "html_only_content.json": (1, 1, {"empty_content": 1}, ["html_tags", "html_entities"]),
    "byte_order_mark.json": (2, 0, {}, []),
    "json_array.json": (2, 0, {"empty_title": 1}, []),
    "wrong_field_names.json": (1, 1, {"missing_title": 1}, ["field_name_case"]),
    "not_objects.json": (1, 0, {"not_an_object": 4}, []),
    "null_and_nan.json": (1, 0, {"null_title": 1, "null_content": 2}, []),
    "repeated_uids.json": (2, 0, {"duplicate": 1}, []),
    "crlf_line_endings.json": (2, 0, {}, []),
    "blank_lines.json": (2, 0, {"blank_line": 2}, []),
    "control_characters.json": (1, 1, {}, ["control_characters"]),
    "numbers_as_text.json": (1, 0, {"title_not_text": 1}, []),
    "invalid_utf8.json": (1, 1, {}, ["invalid_utf8"]),
}


def lines_in(path: Path) -> int:
    data = path.read_bytes()
    if data.lstrip().startswith(b"["):
        return len(json.loads(data))
    return len(data.splitlines())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file(name, tmp_path):
    kept, repaired, reasons, repairs = EXPECTED[name]
    counts = prepare(args_for(CORPUS / name, tmp_path, validation_fraction=0.0, test_fraction=0.0))
    assert counts["outcomes"] == {"kept": kept, "repaired": repaired, "rejected": sum(reasons.values())}
    assert counts["rejected_reasons"] == reasons
    assert set(repairs) <= set(counts["repairs"])
    assert counts["input_lines"] == lines_in(CORPUS / name) == sum(counts["outcomes"].values())
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert all({"line", "reason", "raw"} <= set(row) for row in rejects) and len(rejects) == sum(reasons.values())


def test_the_corpus_is_complete():
    assert {p.name for p in CORPUS.iterdir()} == set(EXPECTED) | {"empty.json", "utf16.json"}


def test_repeated_uids_are_counted(tmp_path):
    counts = prepare(args_for(CORPUS / "repeated_uids.json", tmp_path, validation_fraction=0.0, test_fraction=0.0))
    assert counts["repeated_uids"] == 1


def test_ten_megabyte_line_is_quarantined_and_cut_in_the_rejects(tmp_path):
    raw = tmp_path / "trn.json"
    huge = json.dumps({"title": "Huge", "content": "x" * 10_000_000})
    raw.write_text("\n".join([json.dumps({"title": "Tutu", "content": "Pink."}), huge]) + "\n")
    counts = prepare(args_for(raw, tmp_path, validation_fraction=0.0, test_fraction=0.0))
    assert counts["rejected_reasons"] == {"line_too_long": 1} and counts["outcomes"]["kept"] == 1
    (reject,) = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert reject["line"] == 2 and len(reject["raw"]) == 4096 and reject["raw_truncated_from_chars"] == len(huge)


@pytest.mark.parametrize(
    "name, message",
    [
        ("empty.json", r"empty\.json: the file is empty"),
        ("utf16.json", r"utf16\.json: line 1: the file is UTF-16"),
        ("missing.json", r"missing\.json: file not found"),
    ],
)
def test_unusable_files_stop_with_the_file_line_and_problem(name, message, tmp_path):
    with pytest.raises(InputError, match=message):
        prepare(args_for(CORPUS / name, tmp_path))


def test_broken_json_array_names_the_line(tmp_path):
    raw = tmp_path / "array.json"
    raw.write_text('[\n{"title": "a", "content": "b"},\n{"title": oops}\n]')
    with pytest.raises(InputError, match=r"array\.json: line 3: not valid JSON"):
        prepare(args_for(raw, tmp_path))


def test_stage_stops_with_a_message_not_a_traceback(tmp_path):
    import subprocess
    import sys

    from tests.conftest import SCRIPTS

    args = [
        "--raw",
        str(CORPUS / "utf16.json"),
        "--instruction-template",
        "{title}",
        "--response-template",
        "{content}",
    ] + [
        item
        for name in ("train", "validation", "test", "counts", "rejects")
        for item in (f"--{name}", str(tmp_path / name))
    ]
    result = subprocess.run([sys.executable, str(SCRIPTS / "prepare.py"), *args], capture_output=True, text=True)
    assert result.returncode == 1
    assert "prepare: " in result.stderr and "utf16.json: line 1: the file is UTF-16" in result.stderr
    assert "Traceback" not in result.stderr
