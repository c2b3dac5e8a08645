"""Writes the bad-input files of tests/bad_inputs/ that are binary or hard to type (compressed, deep nesting,
raw control bytes); run from the repository root: python tests/make_bad_inputs.py"""

import bz2
import gzip
import io
import json
import lzma
import zipfile
from pathlib import Path

import zstandard

CORPUS = Path(__file__).parent / "bad_inputs"
GOOD = [{"uid": f"B00000000{i}", "title": f"Product {i}", "content": f"Description of product {i}."} for i in (1, 2)]


def jsonl(*rows) -> bytes:
    return b"".join((row if isinstance(row, bytes) else json.dumps(row).encode()) + b"\n" for row in rows)


def plain_files() -> dict[str, bytes]:
    deep = b"[" * 5000 + b"]" * 5000
    return {
        "deeply_nested.json": jsonl(
            GOOD[0], b'{"title": "Deep", "content": "x", "target_ind": ' + deep + b"}", deep, GOOD[1]
        ),
        "deeply_nested_array.json": b"["
        + b", ".join([json.dumps(GOOD[0]).encode(), deep, json.dumps(GOOD[1]).encode()])
        + b"]",
        "lone_surrogates.json": jsonl(
            GOOD[0],
            b'{"uid": "\\ud800", "title": "Tutu", "content": "Pink."}',
            b'{"uid": "B3", "title": "Skirt", "content": "Blue.", "target_ind": ["\\udc00"]}',
            b'{"uid": "B4", "title": "Dress \\ud800 red", "content": "Red."}',
        ),
        "cp1252_bytes.json": jsonl(
            GOOD[0],
            b'{"title": "Caf\xe9 au lait mug", "content": "A mug for caf\xe9 au lait."}',
            b'{"title": "Quote mug", "content": "\x93Smart\x94 \x96 and \x85"}',
        ),
        "raw_control_characters.json": jsonl(
            GOOD[0],
            b'{"title": "Tab\tmug", "content": "A mug\twith a tab."}',
            b'{"title": "Nul mug", "content": "A mug\x00 with a NUL."}',
        ),
        "html_comments_and_scripts.json": jsonl(
            GOOD[0],
            {
                "title": "Tutu",
                "content": "<!-- note: check stock -->Soft <script>alert('x')</script>tutu<style>p{}</style>.",
            },
        ),
        "stray_angle_brackets.json": jsonl(
            GOOD[0],
            {"title": "Ring size <7", "content": "Fits fingers < 7 cm; I <3 it; x<y and z>w; <unknown words> stay."},
        ),
        "punctuation_titles.json": jsonl(
            GOOD[0],
            {"title": "\U0001f380", "content": "One bow."},
            {"title": "\U0001f380\U0001f380", "content": "Two bows."},
            {"title": "!!!", "content": "Loud."},
            {"title": "???", "content": "Curious."},
            {"title": "\U0001f380", "content": "Another text under the same bow."},
        ),
        "cr_line_endings.json": jsonl(*GOOD, {"title": "", "content": "x"}).replace(b"\n", b"\r"),
        "utf16_without_bom.json": jsonl(*GOOD).decode().encode("utf-16-le"),
        "binary_png.json": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "binary_data.bin": bytes((i * 7919) % 256 for i in range(4096)),
    }


COMPRESSED_ROWS = jsonl(
    *GOOD, {"title": "Product 3", "content": "Description of product 3."}, {"title": "", "content": "x"}
)


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def compressed_files() -> dict[str, bytes]:
    gz = gzip.compress(COMPRESSED_ROWS, mtime=0)
    return {
        "gzip_named_json.json": gz,
        "bzip2.json.bz2": bz2.compress(COMPRESSED_ROWS),
        "xz.json.xz": lzma.compress(COMPRESSED_ROWS),
        "zstd.json.zst": zstandard.ZstdCompressor().compress(COMPRESSED_ROWS),
        "zip_one_member.zip": zipped({"trn.json": COMPRESSED_ROWS}),
        "zip_two_members.zip": zipped({"trn.json": COMPRESSED_ROWS, "tst.json": COMPRESSED_ROWS}),
        "truncated_gzip.json.gz": gz[: len(gz) // 2],
        "gzip_in_gzip.json.gz": gzip.compress(gz, mtime=0),
    }


if __name__ == "__main__":
    for name, data in {**plain_files(), **compressed_files()}.items():
        (CORPUS / name).write_bytes(data)
