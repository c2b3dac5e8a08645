"""Generate synthetic product data in the AmazonTitles-1.3MM ``trn.json`` shape.

The real ``trn.json`` cannot be shipped or downloaded here, so this script makes
stand-ins for it:

* the small demo catalog ``data/sample_catalog.json`` that the pipeline runs on
  out of the box (``--demo``: 400 rows, seed 42, a few benign quirks), and
* full-size synthetic benchmark input (e.g. ``--rows 2250000 --quirk-rate 0.05``)
  with the defects the cleaning stage must survive.

Each line is one JSON object with ``uid`` (10-char ASIN or ISBN-10), ``title``,
``content`` (the description), ``target_ind`` (label ids) and ``target_rel``
(1.0 per label). Titles and descriptions are built from per-category word lists
and sentence templates, so a description always repeats the title's facts
(brand, item, colour, material, size). Output is reproducible byte for byte for
a given seed, quirk rate and quirk list; rows without a quirk do not depend on
the quirk settings at all, because quirks draw from their own random stream.

Only the standard library is used.
"""

import argparse
import json
import os
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

Record = dict | str | bytes

N_LABELS = 1_305_265  # label count of AmazonTitles-1.3MM

QUIRK_KINDS = (
    "html_entities",
    "empty_content",
    "empty_title",
    "blank_title",
    "duplicate_row",
    "duplicate_title",
    "csv_doubled_quotes",
    "stringified_targets",
    "control_chars",
    "stray_whitespace",
    "truncated_json",
    "non_object",
    "null_field",
    "wrong_field_name",
    "invalid_utf8",
)
# Quirks that still leave every line a valid JSON object with the right fields.
# A repeated name is drawn more often: entities and stray whitespace are common
# in the real file, while a demo needs only one or two empty or duplicate rows.
DEMO_QUIRK_KINDS = (
    "html_entities",
    "html_entities",
    "stray_whitespace",
    "stray_whitespace",
    "empty_content",
    "duplicate_row",
)
DEMO_ROWS = 400
DEMO_SEED = 42
DEMO_QUIRK_RATE = 0.03

# Slots drawn as three distinct values, ``{x}``, ``{x2}`` and ``{x3}``, so that
# the opening sentence and a body sentence do not repeat the same phrase.
PAIRED_SLOTS = frozenset({"feature", "use", "kw", "theme", "room"})
ISBN_CATEGORIES = frozenset({"fiction", "nonfiction"})

# Vocabulary, one text block per category, in data/catalog_vocabulary.txt
# (a "[category]" line opens each block). Each line is "key: value"; lines
# that start with spaces continue the line above. Keys:
#   title / open / body / close  a template (repeatable); {slot} is the title
#       form of a value, {slot.low} its in-sentence form. Alternative wordings
#       of one body sentence are separated by " || ". {brand.poss} is the
#       possessive ("Acme's", "Acme Labs'").
#   item NAME   the slot lists that replace the category's for that item,
#       as "slot=a|b|c; slot=d|e" or "slot=@name" for a list defined as
#       "@name: ..." (such lists are only used through items).
#   any other   a slot: "|"-separated values; "Title Form=text form" sets the
#       in-sentence form when lower-casing the title form is not enough.
VOCABULARY = Path(__file__).resolve().parents[1] / "data" / "catalog_vocabulary.txt"


def read_specs(path: Path = VOCABULARY) -> dict[str, str]:
    """The vocabulary file as {category: its text block}, in file order; "#" lines are comments."""
    specs: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        if line.startswith("[") and line.rstrip().endswith("]"):
            lines = specs.setdefault(line.strip()[1:-1], [])
        elif lines is not None and line:
            lines.append(line)
    return {name: "\n".join(lines) + "\n" for name, lines in specs.items()}


SPECS = read_specs()

# Proper nouns that keep their capitals inside sentences.
KEEP_CASE = frozenset(
    [
        "French",
        "German",
        "Japanese",
        "Mediterranean",
        "Python",
        "Himalayan",
        "Scandinavian",
        "Japandi",
        "Montessori",
        "Supima",
        "Pima",
        "Kevlar",
        "Galaxy",
        "Pixel",
        "Air",
        "Pro",
        "Max",
    ]
)


class Term(str):
    """A vocabulary value: ``str(term)`` is the title form, ``term.low`` the
    in-sentence form and ``term.poss`` the possessive of the title form."""

    low: str
    poss: str


def _lower_part(part: str) -> str:
    # Single letters (T-Shirt, USB-C) and inner capitals (BPA, iPhone, 20V) are
    # acronyms or brand spellings; keep those as written.
    if len(part) == 1 or part in KEEP_CASE or not part[1:].islower():
        return part
    return part.lower()


def _lower_word(word: str) -> str:
    return "-".join(_lower_part(p) for p in word.split("-"))


def _term(spec: str) -> Term:
    title, _, low = spec.partition("=")
    term = Term(title)
    term.low = low or " ".join(_lower_word(w) for w in title.split(" "))
    plural = title.endswith("s") and not title.endswith(("ss", "us"))
    term.poss = title + ("'" if plural else "'s")
    return term


def _terms(values: str) -> tuple[Term, ...]:
    return tuple(_term(v.strip()) for v in values.split("|"))


def _spec_lines(text: str) -> Iterator[tuple[str, str]]:
    """Yield (key, value) pairs, joining continuation lines."""
    key, parts = None, []
    for line in text.splitlines():
        if line.startswith(" "):
            parts.append(line.strip())
            continue
        if key is not None:
            yield key, " ".join(parts)
        key, _, value = line.partition(": ")
        parts = [value]
    if key is not None:
        yield key, " ".join(parts)


def _overrides(value: str, named: dict[str, tuple[Term, ...]]) -> dict:
    pairs = (part.strip().partition("=") for part in value.split(";"))
    return {slot: named[values] if values.startswith("@") else _terms(values) for slot, _, values in pairs}


class Category:
    """Compiled vocabulary and templates of one product category."""

    def __init__(self, index: int, name: str, spec: str) -> None:
        self.name = name
        self.isbn = name in ISBN_CATEGORIES
        self.label_base = index * (N_LABELS // len(SPECS))
        templates: dict[str, list] = {"title": [], "open": [], "body": [], "close": []}
        slots: dict[str, tuple[Term, ...]] = {}
        named: dict[str, tuple[Term, ...]] = {}
        items: dict[str, str] = {}
        for key, value in _spec_lines(spec):
            if key in templates:
                templates[key].append(value)
            elif key.startswith("item "):
                items[key[5:]] = value
            elif key.startswith("@"):
                named[key] = _terms(value)
            else:
                slots[key] = _terms(value)
        self.titles = tuple(templates["title"])
        self.opens = tuple(templates["open"])
        self.bodies = tuple(tuple(b.split(" || ")) for b in templates["body"])
        self.closes = tuple(templates["close"])
        self.items = tuple(
            (_term(item), self._slot_table(slots, _overrides(value, named))) for item, value in items.items()
        )

    @staticmethod
    def _slot_table(shared: dict, overrides: dict) -> tuple:
        """(key, key2, key3, values, len, max step or 0 if not paired) per slot."""
        table = {**shared, **overrides}
        return tuple(
            (
                k,
                k + "2",
                k + "3",
                v,
                len(v),
                (len(v) - 1) // 2 if k in PAIRED_SLOTS else 0,
            )
            for k, v in table.items()
        )

    def draw(self, rand) -> dict:
        """Pick one value per slot, three distinct ones for PAIRED_SLOTS."""
        item, table = self.items[int(rand() * len(self.items))]
        attrs = {"item": item}
        for key, key2, key3, values, n, max_step in table:
            i = int(rand() * n)
            attrs[key] = values[i]
            if max_step:
                # i, i+step, i+2*step are distinct mod n while 2*step < n.
                step = 1 + int(rand() * max_step)
                attrs[key2] = values[(i + step) % n]
                attrs[key3] = values[(i + 2 * step) % n]
        return attrs

    def title(self, attrs: dict, rand) -> str:
        return self.titles[int(rand() * len(self.titles))].format_map(attrs)

    def describe(self, attrs: dict, rand) -> str:
        """Opening sentence, 1-3 distinct body sentences, sometimes a closer."""
        parts = [self.opens[int(rand() * len(self.opens))].format_map(attrs)]
        bodies = self.bodies
        n = len(bodies)
        i = int(rand() * n)
        step = 1 + int(rand() * ((n - 1) // 2))  # as in draw(): no repeats
        for _ in range(1 + int(rand() * 3)):
            wordings = bodies[i]
            parts.append(wordings[int(rand() * len(wordings))].format_map(attrs))
            i = (i + step) % n
        if rand() < 0.6:
            parts.append(self.closes[int(rand() * len(self.closes))].format_map(attrs))
        return " ".join(parts)

    def targets(self, rand) -> list[int]:
        """1-24 label ids (mostly few) from this category's block, ascending."""
        count = 1 + int(rand() * rand() * 24)
        # One id per equal slice of the block: sorted and distinct by construction.
        width = N_LABELS // len(SPECS) // count
        base = self.label_base
        return [base + j * width + int(rand() * width) for j in range(count)]


CATEGORIES = tuple(Category(i, name, spec) for i, (name, spec) in enumerate(SPECS.items()))

_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_B36_PAIRS = tuple(x + y for x in _B36 for y in _B36)
_ASIN_HALF = 36**4  # ASIN = "B0" + 8 base-36 digits = two halves of 4
_ISBN_HALF = 31_622  # _ISBN_HALF**2 < 10**9, the 9-digit ISBN body
MAX_ROWS = _ISBN_HALF**2


def _permute(i: int, keys: tuple[int, ...], half: int) -> int:
    """Map range(half**2) onto itself one-to-one (a small Feistel network).

    Row numbers become distinct ids that do not look sequential; an affine map
    would be one-to-one too, but leaves visible digit patterns across rows.
    """
    left, right = divmod(i, half)
    for key in keys:
        left, right = right, (left + ((right ^ key) * 2_654_435_761 >> 9)) % half
    return left * half + right


def _asin(i: int, keys: tuple[int, ...]) -> str:
    high, low = divmod(_permute(i, keys, _ASIN_HALF), _ASIN_HALF)
    a, b = divmod(high, 1296)
    c, d = divmod(low, 1296)
    return "B0" + _B36_PAIRS[a] + _B36_PAIRS[b] + _B36_PAIRS[c] + _B36_PAIRS[d]


def _isbn10(i: int, keys: tuple[int, ...]) -> str:
    body = f"{_permute(i, keys, _ISBN_HALF):09d}"
    total = sum((10 - pos) * int(d) for pos, d in enumerate(body))
    check = (11 - total % 11) % 11
    return body + ("X" if check == 10 else str(check))


# The same bytes as json.dumps(rec, ensure_ascii=False), without building a new
# encoder on every call.
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


# ---------------------------------------------------------------- quirks ----


class _QuirkContext:
    """State a quirk may use: its own random stream and earlier clean rows."""

    POOL_SIZE = 1024

    def __init__(self, seed: int) -> None:
        self.rand = random.Random(f"{seed}:quirks").random
        self.pool: list[tuple[dict, Category, dict]] = []
        self.attrs: dict = {}  # slot values of the current row

    def remember(self, n: int, rec: dict, cat: Category, attrs: dict) -> None:
        if len(self.pool) < self.POOL_SIZE:
            self.pool.append((rec, cat, attrs))
        else:
            self.pool[n % self.POOL_SIZE] = (rec, cat, attrs)

    def choice(self, seq: Sequence):
        return seq[int(self.rand() * len(seq))]

    def earlier(self) -> tuple[dict, Category, dict] | None:
        return self.choice(self.pool) if self.pool else None

    def spot(self, text: str) -> int:
        """A random word boundary in text (len(text) if there is none after it)."""
        pos = text.find(" ", int(self.rand() * len(text)))
        return len(text) if pos < 0 else pos


def _q_html_entities(rec: dict, q: _QuirkContext) -> dict:
    text = rec["content"]
    new = text.replace("&", "&amp;").replace("'", "&#8217;").replace(" - ", " &#8211; ")
    brand = q.attrs.get("brand")
    if brand and q.rand() < 0.5:
        new = new.replace(brand, f"&quot;{brand}&quot;", 1)
    if new == text:
        new = text.replace(" and ", " &amp; ", 1)
    if new == text:
        new = text + " &quot;Five stars&quot; &#8211; a verified buyer."
    return {**rec, "content": new}


def _q_empty_content(rec: dict, q: _QuirkContext) -> dict:
    return {**rec, "content": ""}


def _q_empty_title(rec: dict, q: _QuirkContext) -> dict:
    return {**rec, "title": ""}


def _q_blank_title(rec: dict, q: _QuirkContext) -> dict:
    return {**rec, "title": q.choice((" ", "   ", "\t", " \n "))}


def _q_duplicate_row(rec: dict, q: _QuirkContext) -> dict | None:
    earlier = q.earlier()
    return earlier[0] if earlier else None


def _q_duplicate_title(rec: dict, q: _QuirkContext) -> dict | None:
    earlier = q.earlier()
    if earlier is None:
        return None
    old, cat, attrs = earlier
    for _ in range(8):
        content = cat.describe(attrs, q.rand)
        if content != old["content"]:
            return {**rec, "title": old["title"], "content": content}
    return None


def _q_csv_doubled_quotes(rec: dict, q: _QuirkContext) -> str:
    return '"' + _ENCODE(rec).replace('"', '""') + '"'


def _q_stringified_targets(rec: dict, q: _QuirkContext) -> dict:
    return {
        **rec,
        "target_ind": str(rec["target_ind"]),
        "target_rel": str(rec["target_rel"]),
    }


def _q_control_chars(rec: dict, q: _QuirkContext) -> dict:
    field = q.choice(("title", "content"))
    text = rec[field]
    pos = q.spot(text)
    return {
        **rec,
        field: text[:pos] + q.choice("\x07\x0b\x0c\x1b\x08\x00") + text[pos:],
    }


def _q_stray_whitespace(rec: dict, q: _QuirkContext) -> dict:
    title = q.choice(("", " ", "  ", "\t")) + rec["title"] + q.choice((" ", "  ", "\n"))
    if q.rand() < 0.5:
        title = title.replace(" ", "   ", 1)
    gap = q.choice((".  ", ".\n", ".\n\n", ".   ", ". \n "))
    content = rec["content"].replace(". ", gap) + q.choice(("\n", " ", "  \n", ""))
    return {
        **rec,
        "title": title,
        "content": " " + content if q.rand() < 0.3 else content,
    }


def _q_truncated_json(rec: dict, q: _QuirkContext) -> str:
    line = _ENCODE(rec)
    return line[: int(len(line) * (0.2 + 0.75 * q.rand()))]


def _q_non_object(rec: dict, q: _QuirkContext) -> str:
    return q.choice(
        (
            _ENCODE(rec["target_ind"]),
            _ENCODE(rec["title"]),
            _ENCODE([rec["uid"], rec["title"]]),
            "null",
            "[]",
            "42",
        )
    )


def _q_null_field(rec: dict, q: _QuirkContext) -> dict:
    return {**rec, q.choice(("title", "content")): None}


def _q_wrong_field_name(rec: dict, q: _QuirkContext) -> dict:
    old, new = q.choice((("title", "Title"), ("title", "Title"), ("content", "Content")))
    return {(new if key == old else key): value for key, value in rec.items()}


def _q_invalid_utf8(rec: dict, q: _QuirkContext) -> bytes:
    line = _ENCODE(rec).encode("utf-8")
    start = line.index(b'"content": "') + len(b'"content": "')
    end = line.index(b'", "target_ind"', start)
    # Insert at a space so the byte never lands inside a UTF-8 sequence or escape.
    pos = line.find(b" ", start + int(q.rand() * (end - start)), end)
    pos = start if pos < 0 else pos
    return line[:pos] + q.choice((b"\xff", b"\xfe", b"\x80", b"\xc3\x28")) + line[pos:]


_QUIRKS = {
    "html_entities": _q_html_entities,
    "empty_content": _q_empty_content,
    "empty_title": _q_empty_title,
    "blank_title": _q_blank_title,
    "duplicate_row": _q_duplicate_row,
    "duplicate_title": _q_duplicate_title,
    "csv_doubled_quotes": _q_csv_doubled_quotes,
    "stringified_targets": _q_stringified_targets,
    "control_chars": _q_control_chars,
    "stray_whitespace": _q_stray_whitespace,
    "truncated_json": _q_truncated_json,
    "non_object": _q_non_object,
    "null_field": _q_null_field,
    "wrong_field_name": _q_wrong_field_name,
    "invalid_utf8": _q_invalid_utf8,
}


# ------------------------------------------------------------ generation ----


def _check_args(n_rows: int, quirk_rate: float, kinds: Sequence[str]) -> None:
    if not 0 <= n_rows <= MAX_ROWS:
        raise ValueError(f"n_rows must be in [0, {MAX_ROWS}], got {n_rows}")
    if not 0.0 <= quirk_rate <= 1.0:
        raise ValueError(f"quirk_rate must be in [0, 1], got {quirk_rate}")
    unknown = [k for k in kinds if k not in _QUIRKS]
    if unknown:
        raise ValueError(f"unknown quirk kinds {unknown}; choose from {QUIRK_KINDS}")
    if quirk_rate > 0 and not kinds:
        raise ValueError("quirk_rate > 0 needs at least one quirk kind")


def generate_labelled(
    n_rows: int,
    seed: int = 42,
    quirk_rate: float = 0.0,
    quirk_kinds: Sequence[str] = QUIRK_KINDS,
) -> Iterator[tuple[Record, str | None]]:
    """Like generate_records, but yields (record, quirk kind or None) pairs."""
    kinds = tuple(quirk_kinds)
    _check_args(n_rows, quirk_rate, kinds)  # here, not on the first next()
    return _rows(n_rows, seed, quirk_rate, kinds)


def _rows(n_rows: int, seed: int, quirk_rate: float, kinds: tuple[str, ...]) -> Iterator[tuple[Record, str | None]]:
    rand = random.Random(seed).random
    q = _QuirkContext(seed)
    qrand = q.rand
    uid_rng = random.Random(f"{seed}:uids")
    uid_keys = tuple(uid_rng.getrandbits(32) for _ in range(3))
    cats = CATEGORIES
    for n in range(n_rows):
        cat = cats[int(rand() * len(cats))]
        attrs = cat.draw(rand)
        ind = cat.targets(rand)
        rec = {
            "uid": _isbn10(n, uid_keys) if cat.isbn else _asin(n, uid_keys),
            "title": cat.title(attrs, rand),
            "content": cat.describe(attrs, rand),
            "target_ind": ind,
            "target_rel": [1.0] * len(ind),
        }
        if quirk_rate and qrand() < quirk_rate:
            kind = kinds[int(qrand() * len(kinds))]
            q.attrs = attrs
            out = _QUIRKS[kind](rec, q)
            if out is not None:
                yield out, kind
                continue
        q.remember(n, rec, cat, attrs)
        yield rec, None


def generate_records(
    n_rows: int,
    seed: int = 42,
    quirk_rate: float = 0.0,
    quirk_kinds: Sequence[str] = QUIRK_KINDS,
) -> Iterator[Record]:
    """Yield n_rows records in order: dicts, or str/bytes for raw broken lines.

    With quirk_rate > 0 about that fraction of rows carries one quirk drawn
    uniformly from quirk_kinds (names from QUIRK_KINDS; repeat a name to weight
    it). A duplicate quirk on a row with no earlier clean row leaves it clean.
    """
    return (rec for rec, _ in generate_labelled(n_rows, seed, quirk_rate, quirk_kinds))


def _encode_line(rec: Record) -> bytes:
    if isinstance(rec, bytes):
        return rec
    if isinstance(rec, str):
        return rec.encode("utf-8")
    return _ENCODE(rec).encode("utf-8")


def write_jsonl(path: str | os.PathLike, records: Iterable[Record]) -> int:
    """Write one line per record atomically; return the number of lines."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    count = 0
    try:
        # os.open with 0o666 lets the umask decide the final permissions.
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), "wb") as f:
            batch: list[bytes] = []
            for rec in records:
                batch.append(_encode_line(rec))
                if len(batch) == 8192:
                    f.write(b"\n".join(batch) + b"\n")
                    count += len(batch)
                    batch.clear()
            if batch:
                f.write(b"\n".join(batch) + b"\n")
                count += len(batch)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return count


# ------------------------------------------------------------------- CLI ----


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Generate synthetic AmazonTitles-shaped product data (JSON Lines).",
        epilog="Quirk kinds: " + ", ".join(QUIRK_KINDS),
    )
    parser.add_argument("--rows", type=int, help=f"number of lines (default {DEMO_ROWS})")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="random seed (default 42)")
    parser.add_argument(
        "--quirk-rate",
        type=float,
        help="fraction of rows with one quirk (default 0, or 0.03 with --demo)",
    )
    parser.add_argument(
        "--quirk-kinds",
        help="comma-separated quirk kinds to draw from; repeat a kind to draw it "
        "more often (default all, or the benign demo set with --demo)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="make the shipped demo catalog: 400 rows, quirk rate 0.03, only benign "
        "quirks (" + ", ".join(dict.fromkeys(DEMO_QUIRK_KINDS)) + ")",
    )
    parser.add_argument("--out", required=True, help="output path (written atomically)")
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = DEMO_ROWS
    if args.quirk_rate is None:
        args.quirk_rate = DEMO_QUIRK_RATE if args.demo else 0.0
    if args.quirk_kinds is None:
        args.quirk_kinds = DEMO_QUIRK_KINDS if args.demo else QUIRK_KINDS
    else:
        args.quirk_kinds = tuple(k.strip() for k in args.quirk_kinds.split(",") if k.strip())
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        records = generate_records(args.rows, args.seed, args.quirk_rate, args.quirk_kinds)
        count = write_jsonl(args.out, records)
    except ValueError as err:
        print(f"make_catalog: {err}", file=sys.stderr)
        return 2
    print(f"wrote {count} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
