"""The bad-input corpus (tests/bad_inputs/): every file is repaired, quarantined with its reason, or stopped
with a message naming the file, the line and the problem; the row accounting always adds up."""

import json
from pathlib import Path

import pytest
from prepare import InputError, prepare

from ftpipe.rawdata.raw_input import split_array
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
    "deeply_nested.json": (2, 0, {"nested_too_deeply": 2}, []),
    "deeply_nested_array.json": (2, 0, {"nested_too_deeply": 1}, []),
    "lone_surrogates.json": (1, 1, {"lone_surrogate": 2}, ["control_characters"]),
    "cp1252_bytes.json": (1, 2, {}, ["invalid_utf8"]),
    "raw_control_characters.json": (1, 2, {}, ["control_characters"]),
    "html_comments_and_scripts.json": (1, 1, {}, ["html_tags"]),
    "stray_angle_brackets.json": (2, 0, {}, []),
    "punctuation_titles.json": (5, 0, {"duplicate_title": 1}, []),
    "gzip_named_json.json": (3, 0, {"empty_title": 1}, []),
    "bzip2.json.bz2": (3, 0, {"empty_title": 1}, []),
    "xz.json.xz": (3, 0, {"empty_title": 1}, []),
    "zstd.json.zst": (3, 0, {"empty_title": 1}, []),
    "zip_one_member.zip": (3, 0, {"empty_title": 1}, []),
    "cr_line_endings.json": (2, 0, {"empty_title": 1}, []),
    "half_converted_array.json": (1, 2, {"array_element_invalid_json": 1}, ["array_element_comma"]),
    "csv_unclosed_quote.csv": (0, 2, {"unclosed_quote": 1}, ["html_tags"]),
    "csv_wrong_field_count.csv": (2, 0, {"wrong_field_count": 2}, []),
    "csv_text_after_quote.csv": (2, 0, {"malformed_csv": 1}, []),
}

# file -> what the one-line message says (files that cannot be read as a whole stop the stage)
STOPS = {
    "empty.json": r"empty\.json: the file is empty",
    "utf16.json": r"utf16\.json: line 1: the file is UTF-16",
    "utf16_without_bom.json": r"utf16_without_bom\.json: line 1: the file is UTF-16",
    "binary_png.json": r"binary_png\.json: a PNG image, not a catalog",
    "binary_data.bin": r"binary_data\.bin: binary data, not a catalog",
    "zip_two_members.zip": r"two_members\.zip: a zip archive of 2 files \(trn\.json, tst\.json\); only a zip of one",
    "truncated_gzip.json.gz": r"truncated_gzip\.json\.gz: the gzip data cannot be read to the end: damaged or cut",
    "gzip_in_gzip.json.gz": r"gzip_in_gzip\.json\.gz: gzip data \(inside its gzip compression\); decompress it first",
    "csv_no_description_column.csv": r"csv_no_description_column\.csv: no description column found; its CSV header: "
    r"'Handle', 'Title', 'Vendor', 'Variant Price' \(name it with data\.columns\.content\)$",
}


def decompressed(path: Path) -> bytes:
    import bz2
    import gzip
    import lzma
    import zipfile

    import zstandard

    data = path.read_bytes()
    for magic, read in [
        (b"\x1f\x8b", gzip.decompress),
        (b"BZh", bz2.decompress),
        (b"\xfd7zXZ", lzma.decompress),
        (b"\x28\xb5\x2f\xfd", zstandard.ZstdDecompressor().decompressobj().decompress),
        (b"PK", lambda _: zipfile.ZipFile(path).read(zipfile.ZipFile(path).namelist()[0])),
    ]:
        if data.startswith(magic):
            return read(data)
    return data


def lines_in(path: Path) -> int:
    """The input records of a corpus file, counted apart from prepare (a CSV record: one row of the csv
    module, however many lines it spans)."""
    data = decompressed(path)
    if path.suffix == ".csv":
        import csv
        import io

        return len(list(csv.reader(io.StringIO(data.decode(), newline=""), delimiter=";" if b";" in data else ","))) - 1
    if data.lstrip().startswith(b"["):
        return len(split_array(data.decode()))
    if b"\n" not in data:  # lines ended by CR alone
        return len(data.split(b"\r")) - data.endswith(b"\r")
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
    assert {p.name for p in CORPUS.iterdir()} == set(EXPECTED) | set(STOPS)


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


@pytest.mark.parametrize("name, message", [*STOPS.items(), ("missing.json", r"missing\.json: file not found")])
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
    ] + [
        item
        for name in ("train", "validation", "test", "counts", "rejects")
        for item in (f"--{name}", str(tmp_path / name))
    ]
    result = subprocess.run([sys.executable, str(SCRIPTS / "prepare.py"), *args], capture_output=True, text=True)
    assert result.returncode == 1
    assert "prepare: " in result.stderr and "utf16.json: line 1: the file is UTF-16" in result.stderr
    assert "Traceback" not in result.stderr


def prepared_rows(name: str, tmp_path: Path) -> list[dict]:
    prepare(args_for(CORPUS / name, tmp_path, validation_fraction=0.0, test_fraction=0.0))
    return [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]


def test_bytes_that_are_not_utf8_are_read_as_cp1252(tmp_path):
    rows = prepared_rows("cp1252_bytes.json", tmp_path)
    assert rows[1]["title"] == "Café au lait mug" and rows[1]["content"] == "A mug for café au lait."
    assert rows[2]["content"] == "“Smart” – and …"


def test_raw_control_characters_in_strings_are_repaired(tmp_path):
    rows = prepared_rows("raw_control_characters.json", tmp_path)
    assert [row["content"] for row in rows[1:]] == ["A mug with a tab.", "A mug with a NUL."]


def test_html_comments_and_script_bodies_are_dropped(tmp_path):
    assert prepared_rows("html_comments_and_scripts.json", tmp_path)[1]["content"] == "Soft tutu ."


def test_a_lt_that_opens_no_element_keeps_its_text(tmp_path):
    row = prepared_rows("stray_angle_brackets.json", tmp_path)[1]
    assert row["title"] == "Ring size <7"
    assert row["content"] == "Fits fingers < 7 cm; I <3 it; x<y and z>w; <unknown words> stay."


def test_titles_of_emoji_or_punctuation_only_are_not_duplicates_of_each_other(tmp_path):
    titles = [row["title"] for row in prepared_rows("punctuation_titles.json", tmp_path)]
    assert titles == ["Product 1", "\U0001f380", "\U0001f380\U0001f380", "!!!", "???"]


@pytest.mark.parametrize("name", ["gzip_named_json.json", "bzip2.json.bz2", "xz.json.xz", "zstd.json.zst"])
def test_compressed_input_reads_as_its_content_and_hashes_as_given(name, tmp_path):
    import hashlib

    counts = prepare(args_for(CORPUS / name, tmp_path / "packed", validation_fraction=0.0, test_fraction=0.0))
    plain = tmp_path / "plain.json"
    plain.write_bytes(decompressed(CORPUS / name))
    prepare(args_for(plain, tmp_path / "plain", validation_fraction=0.0, test_fraction=0.0))
    assert counts["source_sha256"] == hashlib.sha256((CORPUS / name).read_bytes()).hexdigest()
    for output in ("train.jsonl", "rejects.jsonl"):
        assert (tmp_path / "packed" / output).read_bytes() == (tmp_path / "plain" / output).read_bytes()


def test_a_folder_given_as_the_input_stops_with_one_line(tmp_path):
    with pytest.raises(InputError, match=r": is a folder, not a file"):
        prepare(args_for(CORPUS, tmp_path))


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b'{"title": "T", "content": "c", "uid": ' + b"9" * 5000 + b"}", "unreadable_line"),  # int digits limit
        (b'{"title": "T", "content": "c", "target_ind": "' + b"[" * 5000 + b'"}', "nested_too_deeply"),
        (b'{"title": "T", "content": "c", "target_rel": ["\\udfff"]}', "lone_surrogate"),
    ],
)
def test_whatever_one_line_raises_is_its_reject_reason(raw, reason, tmp_path):
    source = tmp_path / "trn.json"
    source.write_bytes(b'{"title": "Good", "content": "Kept."}\n' + raw + b"\n")
    counts = prepare(args_for(source, tmp_path, validation_fraction=0.0, test_fraction=0.0))
    assert counts["rejected_reasons"] == {reason: 1} and counts["outcomes"]["kept"] == 1
    (reject,) = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert reject["line"] == 2 and reject["reason"] == reason


def test_an_unexpected_error_in_one_line_is_a_reject_with_its_detail(tmp_path, monkeypatch):
    from ftpipe.rawdata import repairs

    real = repairs.clean_record
    monkeypatch.setattr(repairs, "clean_record", lambda obj, r, c: real(obj, r, c) if obj["title"] != "Boom" else 1 / 0)
    source = tmp_path / "trn.json"
    source.write_text('{"title": "Good", "content": "Kept."}\n{"title": "Boom", "content": "x"}\n')
    counts = prepare(args_for(source, tmp_path, validation_fraction=0.0, test_fraction=0.0))
    assert counts["rejected_reasons"] == {"unreadable_line": 1}
    (reject,) = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert reject["detail"].startswith("ZeroDivisionError")


def test_an_empty_train_split_stops_the_stage(tmp_path):
    with pytest.raises(InputError, match=r"the train split is empty .* no row is left for training"):
        prepare(args_for(CORPUS / "repeated_uids.json", tmp_path, validation_fraction=0.6, test_fraction=0.5))


def test_a_json_array_with_one_unreadable_element_keeps_the_others(tmp_path):
    raw = tmp_path / "array.json"
    raw.write_text('[{"title": "A", "content": "a"}, {"title": "B", "content": "b", "uid": ' + "9" * 5000 + "}]")
    counts = prepare(args_for(raw, tmp_path, validation_fraction=0.0, test_fraction=0.0))
    assert counts["outcomes"] == {"kept": 1, "repaired": 0, "rejected": 1}
    assert counts["rejected_reasons"] == {"unreadable_line": 1}


def test_a_compressed_tar_archive_is_named(tmp_path):
    import io
    import tarfile

    raw = tmp_path / "trn.json.tar.gz"
    with tarfile.open(raw, "w:gz") as archive:
        data = (CORPUS / "blank_lines.json").read_bytes()
        info = tarfile.TarInfo("trn.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(InputError, match=r"trn\.json\.tar\.gz: a tar archive; extract the catalog file from it \("):
        prepare(args_for(raw, tmp_path))


def test_an_encrypted_zip_is_named(tmp_path):
    import zipfile

    raw = tmp_path / "trn.zip"
    data = bytearray((CORPUS / "zip_one_member.zip").read_bytes())
    data[6] |= 1  # the local header's "encrypted" flag
    central = data.rindex(b"PK\x01\x02")
    data[central + 8] |= 1  # and the central directory's
    raw.write_bytes(bytes(data))
    assert zipfile.ZipFile(raw).infolist()[0].flag_bits & 1
    with pytest.raises(InputError, match=r"trn\.zip: the zip's file trn\.json cannot be read \(.*encrypted"):
        prepare(args_for(raw, tmp_path))


def test_training_on_no_blocks_stops_with_a_message(tmp_path):
    import datasets

    from ftpipe.io import save_datasets
    from ftpipe.training.steps import load_blocks

    features = datasets.Features({key: datasets.Sequence(datasets.Value("int32")) for key in ("input_ids", "labels")})
    features["position_ids"] = datasets.Sequence(datasets.Value("int32"))
    empty = datasets.Dataset.from_dict({key: [] for key in features}, features=features)
    save_datasets({"train": empty, "validation": empty}, tmp_path / "packed")
    with pytest.raises(SystemExit, match=r"train: .*packed holds no training blocks"):
        load_blocks(str(tmp_path / "packed"))


@pytest.mark.parametrize(
    "name, line, first_line, reason, detail",
    [
        ("truncated_last_line.json", 3, None, "invalid_json", "Unterminated string starting at: line 1 column 24"),
        ("half_converted_array.json", 3, None, "array_element_invalid_json", "Expecting property name enclosed in"),
        ("csv_unclosed_quote.csv", 3, 5, "unclosed_quote", "never closed before the end of the file"),
        ("csv_wrong_field_count.csv", 2, 3, "wrong_field_count", "5 fields (delimiter ';') where the header has 4"),
        ("csv_text_after_quote.csv", 2, 3, "malformed_csv", "',' expected after '\"'"),
    ],
)
def test_a_reject_carries_the_parsers_message_and_a_csv_records_first_line(
    name, line, first_line, reason, detail, tmp_path
):
    prepare(args_for(CORPUS / name, tmp_path, validation_fraction=0.0, test_fraction=0.0))
    reject = next(row for row in map(json.loads, (tmp_path / "rejects.jsonl").read_text().splitlines()))
    assert (reject["line"], reject.get("first_line"), reject["reason"]) == (line, first_line, reason)
    assert detail in reject["detail"]


def test_lines_cut_from_a_json_array_are_repaired(tmp_path):
    rows = prepared_rows("half_converted_array.json", tmp_path)
    assert [row["uid"] for row in rows] == ["B1", "B2", "B4"]
