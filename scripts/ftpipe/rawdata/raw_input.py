"""Opening a raw input file whatever it turns out to be: plain, compressed (gzip, bzip2, xz, zstd, a zip of
one file; recognized by their first bytes, not their name), or something that is not a catalog at all, in
which case the message says what the file is. raw_records reads the catalog's records from it.

The sha256 of the file as given (compressed or not) is computed while it is read, so the input is read once.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import zipfile
import zlib
from contextlib import ExitStack, contextmanager
from pathlib import Path

HEAD_BYTES = 4096
HASH_BLOCK = 8 << 20
BOM = b"\xef\xbb\xbf"

# (first bytes, name) of the compressed formats read transparently
COMPRESSED = [
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty zip archive
]
# (first bytes, what the file is) of formats that are not catalogs (Parquet is read: raw_records), named so
# the message says what it is
NOT_TEXT = [
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"ARROW1", "an Arrow file"),
]
EXPECTED = "CSV or TSV with a header, JSON Lines, a JSON array of objects, or Parquet"
# Bytes a text may hold; others (NUL and the rest of C0) are rare in text and common in binary data.
_TEXT_BYTES = bytes([9, 10, 12, 13, *range(32, 256)])
_BINARY_SHARE = 0.1  # a text line may carry a stray control byte, not one in ten


class InputError(Exception):
    """A problem with the input as a whole (missing, empty, unreadable): stops the stage."""


class HashingReader:
    """A binary file whose bytes also go into `digest` as they are read."""

    def __init__(self, handle, digest):
        self.handle, self.digest = handle, digest

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data

    def drain(self) -> None:
        """Hash what is left (a decompressor may stop before the file's last bytes)."""
        while self.read(HASH_BLOCK):
            pass


def compression_of(head: bytes) -> str | None:
    return next((name for magic, name in COMPRESSED if head.startswith(magic)), None)


@contextmanager
def open_input(path: Path, digest):
    """Yield (stream of the input's decompressed bytes, format name or None for plain); the file's own bytes
    go into `digest`. Raises InputError for a missing file, a folder, or a zip of several files."""
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a file; point data.raw at the catalog file inside it")
    if not path.exists():
        raise InputError(f"{path}: file not found")
    with ExitStack() as stack:
        try:
            handle = stack.enter_context(open(path, "rb"))
        except OSError as err:
            raise InputError(f"{path}: cannot be read ({err.strerror})") from None
        kind = compression_of(handle.peek(16)[:16])
        if kind == "zip":
            yield _zip_member(path, handle, digest, stack), kind
            return
        reader = HashingReader(handle, digest)
        yield (stack.enter_context(_decompressor(path, kind, reader)) if kind else reader), kind
        reader.drain()


def _decompressor(path: Path, kind: str, reader: HashingReader):
    if kind == "gzip":
        return gzip.GzipFile(fileobj=reader, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(reader)
    if kind == "xz":
        return lzma.LZMAFile(reader)
    try:
        import zstandard
    except ImportError:
        raise InputError(f"{path}: zstd-compressed; install zstandard (requirements.txt) or decompress it") from None
    return zstandard.ZstdDecompressor().stream_reader(reader, read_across_frames=True)


def _zip_member(path: Path, handle, digest, stack: ExitStack):
    """The one file of a zip archive (a zip is read by its index at the end, so it is hashed apart)."""
    HashingReader(handle, digest).drain()
    try:
        archive = stack.enter_context(zipfile.ZipFile(path))
    except zipfile.BadZipFile as err:
        raise InputError(f"{path}: a damaged zip archive ({err})") from None
    members = [info for info in archive.infolist() if not info.is_dir()]
    if len(members) != 1:
        names = ", ".join(info.filename for info in members[:5]) + (", ..." if len(members) > 5 else "")
        raise InputError(
            f"{path}: a zip archive of {len(members)} files ({names or 'none'}); only a zip of one file is read: "
            "extract the one to use and point data.raw at it"
        )
    try:
        return stack.enter_context(archive.open(members[0]))
    except (RuntimeError, NotImplementedError) as err:  # encrypted, or a compression zipfile cannot read
        raise InputError(f"{path}: the zip's file {members[0].filename} cannot be read ({err})") from None


def read_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged or cut-short file can raise, whatever its format."""
    errors: list[type[BaseException]] = [OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(errors)


def check_head(path: Path, head: bytes, kind: str | None) -> None:
    """Stop with one line naming the file and what it is when its first bytes are not text."""
    packed = f" (inside its {kind} compression)" if kind else ""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_utf16(head):
        raise InputError(f"{path}: line 1: the file is UTF-16{packed}; convert it to UTF-8")
    inner = compression_of(head)
    if inner:
        raise InputError(f"{path}: {inner} data{packed}; decompress it first (only one layer is read)")
    what = next((name for magic, name in NOT_TEXT if head.startswith(magic)), None)
    if head[257:262] == b"ustar":  # a tar archive says so after its first file's name
        what = "a tar archive; extract the catalog file from it"
    if what is None and len(head.translate(None, _TEXT_BYTES)) > _BINARY_SHARE * len(head):
        what = "binary data"
    if what:
        raise InputError(f"{path}: {what}{packed}, not a catalog (expected {EXPECTED})")
    if not head.removeprefix(BOM).strip():
        raise InputError(f"{path}: the file is empty{packed} (expected {EXPECTED})")


def _looks_utf16(head: bytes) -> bool:
    """UTF-16 without a byte order mark: ASCII text with a NUL byte every other byte."""
    half = len(head) // 2
    zeros = sorted((head[0::2].count(0), head[1::2].count(0)))
    return half >= 2 and zeros[1] > half * 0.6 and zeros[0] < half * 0.1  # binary data has NULs at both


_ARRAY_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.DOTALL)


def split_array(text: str) -> list[str]:
    """The raw text of each top-level element of a JSON array, found by brackets and commas outside strings:
    for an array that json.loads cannot read whole because one element is nested too deeply."""
    elements, depth, start = [], 0, 0
    for match in _ARRAY_TOKEN.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth == 1:
                start = match.end()
        elif token in ("]", "}"):
            depth -= 1
            if depth == 0:
                elements.append(text[start : match.start()])
                break
        elif token == "," and depth == 1:
            elements.append(text[start : match.start()])
            start = match.end()
    return [element.strip() for element in elements if element.strip()]
