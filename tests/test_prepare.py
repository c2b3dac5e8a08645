"""prepare: parsing and repair of single lines, row accounting, leak-free split, determinism."""

from __future__ import annotations

import json
from argparse import Namespace
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from prepare import InputError, assign_split, build_parser, prepare, title_key

from ftpipe.rawdata.repairs import parse_json_record
from ftpipe.stage import namespace


def line(**fields) -> bytes:
    return json.dumps({"uid": "B000000001", "title": "Girls Ballet Tutu", "content": "A pink tutu.", **fields}).encode()


def parse_line(raw: bytes) -> SimpleNamespace:
    """One JSON line through prepare's parser: its record, repairs, reject reason and the parser's message."""
    return SimpleNamespace(**dict(zip(("record", "repairs", "reason", "detail"), parse_json_record(raw), strict=True)))


def args_for(raw: Path, out: Path, **overrides) -> Namespace:
    """prepare's arguments (its defaults, checked as from a rule), writing into `out`."""
    outputs = {name: str(out / f"{name}.jsonl") for name in ("train", "validation", "test", "rejects")}
    values = dict(
        raw=str(raw),
        **outputs,
        counts=str(out / "counts.json"),
        validation_fraction=0.2,
        test_fraction=0.2,
    )
    return namespace(build_parser(), **{**values, **overrides})


def test_clean_line_is_kept_unchanged():
    outcome = parse_line(line())
    assert outcome.reason is None and outcome.repairs == []
    assert outcome.record["title"] == "Girls Ballet Tutu"


@pytest.mark.parametrize(
    "raw, repair, expected_content",
    [
        (
            line(content="Soft &amp; light &#8211; for girls&#8217; dance"),
            "html_entities",
            "Soft & light – for girls’ dance",
        ),
        (line(content="  A   pink\n\ntutu.  "), "whitespace", "A pink tutu."),
        (line(content="A pink\x07 tutu."), "control_characters", "A pink tutu."),
        (line(content="<p>A pink <b>tutu</b>.</p>"), "html_tags", "A pink tutu ."),
        (b'"{""uid"": ""1"", ""title"": ""Tutu"", ""content"": ""A pink tutu.""}"', "doubled_quotes", "A pink tutu."),
        (b'{"title": "Tutu", "content": "Caf\xe9 au lait."}', "invalid_utf8", "Caf\u00e9 au lait."),
        (b'{"title": "Tutu", "content": "\x93Smart\x94 \x81"}', "invalid_utf8", "\u201cSmart\u201d"),
        (json.dumps({"Title": "Tutu", "content": "A pink tutu."}).encode(), "field_name_case", "A pink tutu."),
        (line(content="A pink tutu.") + b",", "array_element_comma", "A pink tutu."),
        (line(content="A pink tutu.") + b"]", "array_element_comma", "A pink tutu."),
    ],
)
def test_repairs(raw, repair, expected_content):
    outcome = parse_line(raw)
    assert outcome.reason is None
    assert repair in outcome.repairs
    assert outcome.record["content"] == expected_content


@pytest.mark.parametrize(
    "raw, reason, detail",
    [
        (b'{"uid": "1", "title": "Tut', "invalid_json", "Unterminated string starting at: line 1 column 23 (char 22)"),
        (b'{"title": "T", "content": "c" "x"}', "invalid_json", "Expecting ',' delimiter: line 1 column 31 (char 30)"),
        (b'{"title": "T", oops},', "array_element_invalid_json", "Expecting property name enclosed in double quotes"),
    ],
)
def test_a_json_reject_carries_the_parsers_message(raw, reason, detail):
    outcome = parse_line(raw)
    assert outcome.reason == reason and outcome.detail.startswith(detail)


def test_list_stored_as_string_is_parsed():
    outcome = parse_line(line(target_ind="[1, 2]"))
    assert outcome.record["target_ind"] == [1, 2] and "list_as_string" in outcome.repairs


@pytest.mark.parametrize(
    "raw, reason",
    [
        (line(title=""), "empty_title"),
        (line(title="   "), "empty_title"),
        (line(content="<p><br/></p>"), "empty_content"),
        (line(content=None), "null_content"),
        (b'{"uid": "1", "title": "Tutu", "content": NaN}', "null_content"),
        (json.dumps({"name": "Tutu", "content": "x"}).encode(), "missing_title"),
        (line(title=12345), "title_not_text"),
        (b'{"uid": "1", "title": "Tut', "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b"   ", "blank_line"),
    ],
)
def test_rejects(raw, reason):
    assert parse_line(raw).reason == reason


def test_every_line_has_one_outcome(tmp_path):
    from make_catalog import generate_records, write_jsonl

    raw = tmp_path / "trn.json"
    write_jsonl(raw, generate_records(600, seed=3, quirk_rate=0.3))
    counts = prepare(args_for(raw, tmp_path))
    n_lines = len(raw.read_bytes().splitlines())
    assert counts["input_lines"] == n_lines
    assert sum(counts["outcomes"].values()) == n_lines
    rejects = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == counts["outcomes"]["rejected"] == sum(counts["rejected_reasons"].values())
    assert Counter(r["reason"] for r in rejects) == Counter(counts["rejected_reasons"])
    kept = sum(len((tmp_path / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "validation", "test"))
    assert kept == counts["outcomes"]["kept"] + counts["outcomes"]["repaired"] == counts["sampling"]["sampled"]


def test_split_never_shares_a_title(tmp_path):
    raw = tmp_path / "trn.json"
    rows = [{"uid": str(i), "title": f"Product {i % 40}!", "content": f"Description number {i}."} for i in range(400)]
    raw.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    prepare(args_for(raw, tmp_path, duplicate_titles="keep_all"))
    seen = {}
    for split in ("train", "validation", "test"):
        for row in map(json.loads, (tmp_path / f"{split}.jsonl").read_text().splitlines()):
            assert seen.setdefault(title_key(row["title"]), split) == split
    assert len(set(seen.values())) == 3


def test_split_is_by_normalized_title():
    assert assign_split(title_key("Girls Ballet Tutu"), 0.3, 0.3, 1) == assign_split(
        title_key("girls  ballet-TUTU"), 0.3, 0.3, 1
    )


def test_duplicates(tmp_path):
    raw = tmp_path / "trn.json"
    raw.write_bytes(b"\n".join([line(), line(), line(content="Another text."), line(title="Other")]) + b"\n")
    counts = prepare(args_for(raw, tmp_path, validation_fraction=0.0, test_fraction=0.0))
    assert counts["rejected_reasons"] == {"duplicate": 1, "duplicate_title": 1}
    counts = prepare(args_for(raw, tmp_path, duplicate_titles="keep_all", validation_fraction=0.0, test_fraction=0.0))
    assert counts["rejected_reasons"] == {"duplicate": 1}


def test_sample_is_seeded_and_sized(tmp_path, tiny_catalog):
    first = prepare(args_for(tiny_catalog, tmp_path / "a", sample_size=50))
    again = prepare(args_for(tiny_catalog, tmp_path / "b", sample_size=50))
    other = prepare(args_for(tiny_catalog, tmp_path / "c", sample_size=50, seed=1))
    assert first["sampling"]["sampled"] == 50
    read = lambda d: (d / "train.jsonl").read_bytes()  # noqa: E731
    assert read(tmp_path / "a") == read(tmp_path / "b") != read(tmp_path / "c")
    assert first["splits"] == again["splits"]
    assert other["sampling"]["sampled"] == 50


def test_outputs_are_byte_identical_on_rerun(tmp_path, tiny_catalog):
    prepare(args_for(tiny_catalog, tmp_path / "a"))
    prepare(args_for(tiny_catalog, tmp_path / "b"))
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "rejects.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_json_array_input(tmp_path):
    raw = tmp_path / "trn.json"
    raw.write_text(json.dumps([{"title": "Tutu", "content": "Pink."}, {"title": "", "content": "x"}]))
    counts = prepare(args_for(raw, tmp_path, validation_fraction=0.0, test_fraction=0.0))
    assert counts["input_lines"] == 2 and counts["outcomes"]["rejected"] == 1


@pytest.mark.parametrize("content, message", [(None, "file not found"), (b"", "empty"), (b"  \n", "empty")])
def test_unusable_files_stop_with_a_message(tmp_path, content, message):
    raw = tmp_path / "trn.json"
    if content is not None:
        raw.write_bytes(content)
    with pytest.raises(InputError, match=message):
        prepare(args_for(raw, tmp_path))


def test_counts_carry_the_input_hash(tmp_path, tiny_catalog):
    import hashlib

    counts = prepare(args_for(tiny_catalog, tmp_path))
    assert counts["source_sha256"] == hashlib.sha256(tiny_catalog.read_bytes()).hexdigest()


def test_printable_text_has_no_whitespace_but_space():
    """clean_text skips str.split() on printable text without a doubled, leading or trailing space: exact
    only while str.isprintable() excludes every whitespace character but " "."""
    assert not [c for c in map(chr, range(0x110000)) if c.isspace() and c != " " and c.isprintable()]


@pytest.mark.parametrize("value", ["a b", " a b", "a b ", "a  b", "a\u00a0b", "a\tb", "", " ", "a\u2028b"])
def test_clean_text_whitespace_matches_split(value):
    from ftpipe.rawdata.repairs import clean_text

    repairs = []
    cleaned = clean_text(value, repairs)
    assert cleaned == " ".join(value.split())
    assert repairs == (["whitespace"] if cleaned != value else [])


def test_lines_across_read_blocks(tmp_path, monkeypatch):
    """Lines read in blocks are the lines of iterating the file: BOM, CRLF, a last line without newline."""
    import hashlib

    from ftpipe.rawdata import raw_records

    data = b"\xef\xbb\xbf" + b"".join(
        [b'{"title": 1, "content": 2}\r\n', b"\n", b"x" * 50 + b"\n", b"y\r\r\n", b"  \n", b"z" * 23 + b"\n", b"tail\r"]
    )
    raw = tmp_path / "trn.json"
    raw.write_bytes(data)
    expected = [line for part in data.removeprefix(b"\xef\xbb\xbf").split(b"\n")[:-1] for line in [part.rstrip(b"\r")]]
    expected.append(b"tail")
    for block in (1, 2, 7, 64, 1 << 20):
        monkeypatch.setattr(raw_records, "READ_BYTES", block)
        digest = hashlib.sha256()
        with raw_records.open_catalog(raw, digest) as catalog:
            assert list(catalog.items) == list(enumerate(expected, start=1))
        assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_bottom_k_mask_is_the_heap_even_with_ties(monkeypatch):
    import random
    from array import array

    import prepare as stage

    from ftpipe.rawdata import row_keys

    rng = random.Random(5)
    for n, k, values in [(50, 10, 4), (200, 37, 1000), (30, 30, 3), (30, 31, 3), (40, 1, 2), (60, 20, 10**9)]:
        priorities = [float(rng.randrange(values)) for _ in range(n)]
        lookup = dict(enumerate(priorities))
        monkeypatch.setattr(row_keys, "sample_priority", lambda record, seed: lookup[record["i"]])  # noqa: B023
        records = [{"i": i, "title": "Tutu", "content": "", "uid": ""} for i in range(n)]
        items = [(i, row_keys.row_facts(record, 0)) for i, record in enumerate(records)]
        expected = [number for number, _ in stage.bottom_k_sample(items, k)]
        mask = stage.bottom_k_mask(array("d", priorities), k)
        assert [i for i in range(n) if mask[i]] == expected


@pytest.mark.parametrize("sample_size", [40, 150, 10_000])
def test_spilled_sample_equals_the_heap(tmp_path, monkeypatch, sample_size):
    """A sample larger than IN_MEMORY_SAMPLE goes through a spill file; the outputs are the same bytes."""
    import prepare as stage
    from make_catalog import generate_records, write_jsonl

    raw = tmp_path / "trn.json"
    write_jsonl(raw, generate_records(400, seed=3, quirk_rate=0.3))
    outputs = {}
    for name, limit in (("heap", 10**9), ("spill", 0)):
        monkeypatch.setattr(stage, "IN_MEMORY_SAMPLE", limit)
        counts = prepare(args_for(raw, tmp_path / name, sample_size=sample_size))
        files = ("train.jsonl", "validation.jsonl", "test.jsonl", "rejects.jsonl", "counts.json")
        outputs[name] = [(tmp_path / name / f).read_bytes() for f in files]
        assert not list((tmp_path / name).glob(".*")), "no temporary file is left behind"
    assert outputs["heap"] == outputs["spill"]
    assert counts["sampling"]["sampled"] == min(sample_size, counts["sampling"]["eligible"])


@pytest.mark.parametrize("sample_size, in_memory", [(None, 10_000), (50, 10_000), (400, 100)])
def test_several_processes_give_the_one_process_outputs(tmp_path, monkeypatch, sample_size, in_memory):
    """prepare --processes 4 (3 workers): every output byte-identical to one process (quirky lines, lines over the size
    limit, blocks that end mid-file), without a sample, with one in memory and with one spilled to disk."""
    import prepare as prepare_stage
    from make_catalog import generate_records, write_jsonl

    from ftpipe.rawdata import parse_workers

    monkeypatch.setattr(parse_workers, "PARSE_BLOCK_LINES", 7)  # many blocks, the last one short
    monkeypatch.setattr(prepare_stage, "MAX_LINE_BYTES", 600)  # some lines are over it
    monkeypatch.setattr(prepare_stage, "IN_MEMORY_SAMPLE", in_memory)
    pools, pool = [], prepare_stage.parse_in_processes
    monkeypatch.setattr(
        prepare_stage, "parse_in_processes", lambda lines, n, *rest: pools.append(n) or pool(lines, n, *rest)
    )
    raw = tmp_path / "trn.json"
    write_jsonl(raw, generate_records(1003, seed=3, quirk_rate=0.3))
    outputs = {}
    for processes in (1, 4):
        out = tmp_path / f"p{processes}"
        out.mkdir()
        counts = prepare(args_for(raw, out, sample_size=sample_size, processes=processes))
        outputs[processes] = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    assert counts["input_lines"] == 1003 and counts["rejected_reasons"].get("line_too_long", 0) > 0
    assert counts["outcomes"]["repaired"] > 0 and counts["sampling"]["sampled"] > 0
    assert pools == [3]  # one process parses alone; four: three workers
    assert outputs[1] == outputs[4] and len(outputs[1]) == 5


def test_row_facts_are_the_digests_prepare_compares():
    """A record's facts: its JSON, the dedup digests of its title key (case and punctuation aside), of title
    and content and of its uid, its sample priority, and grouping's digests of title and description."""
    import hashlib

    import orjson

    from ftpipe.grouping import key_digest, normalized_text
    from ftpipe.rawdata.row_keys import row_facts, sample_priority, split_line

    record = {"uid": "B01", "title": "Girls' Ballet TUTU!", "content": "A <pink> tutu, size S.", "target_ind": [3]}
    facts = row_facts(record, 7)
    blake = lambda text: hashlib.blake2b(text.encode(), digest_size=8).digest()  # noqa: E731
    assert facts.record == orjson.dumps(record)
    assert facts.row_digest == blake(f"{title_key(record['title'])}\x00{record['content']}")
    assert facts.title_digest == blake("girls ballet tutu") == row_facts({**record, "title": "girls ballet-tutu"}, 7)[2]
    assert facts.uid_digest == blake("B01") and row_facts({**record, "uid": ""}, 7).uid_digest is None
    assert facts.priority == sample_priority(record, 7) != row_facts(record, 8).priority
    assert facts.group_digests == (key_digest("girls ballet tutu"), key_digest(normalized_text(record["content"])))
    assert split_line(12, facts.record) == orjson.dumps({"line": 12, **record}) + b"\n"


def test_worker_facts_are_the_one_process_facts(tmp_path):
    """The facts computed in the parsing workers (what prepare's main process gets from them) equal the ones
    computed in one process, for clean, repaired, rejected and over-long lines."""
    import functools

    from make_catalog import generate_records, write_jsonl
    from prepare import MAX_LINE_BYTES

    from ftpipe.rawdata.parse_workers import parse_in_processes
    from ftpipe.rawdata.row_keys import parse_with_facts

    write_jsonl(tmp_path / "trn.json", generate_records(300, seed=4, quirk_rate=0.3))
    raws = (tmp_path / "trn.json").read_bytes().splitlines()
    raws[17] = b"{" + b" " * MAX_LINE_BYTES + b"}"
    parse = functools.partial(parse_with_facts, parse_json_record, 11)
    numbered, parsed = parse_in_processes(enumerate(raws), 2, parse, MAX_LINE_BYTES, block_lines=16)
    results = [parsed(raw) for _, raw in numbered if len(raw) <= MAX_LINE_BYTES]
    assert results == [parse(raw) for raw in raws if len(raw) <= MAX_LINE_BYTES]
    assert sum(facts is not None for *_, facts in results) > 200


def test_parse_in_processes_hands_out_each_lines_own_result():
    """The pool's results, in order, are the JSON parser's result for each line under the size limit, whatever
    the block size."""
    from prepare import MAX_LINE_BYTES

    from ftpipe.rawdata.parse_workers import parse_in_processes
    from ftpipe.rawdata.repairs import parse_json_record

    lines = [(n, line(title=f"Tutu {n}", content="x" * (n % 5))) for n in range(1, 60)]
    lines.insert(20, (99, b"{" + b" " * MAX_LINE_BYTES + b"}"))
    numbered, parse = parse_in_processes(iter(lines), 2, parse_json_record, MAX_LINE_BYTES, block_lines=4)
    seen = []
    for number, raw in numbered:
        seen.append(number)
        if len(raw) <= MAX_LINE_BYTES:
            assert parse(raw) == parse_json_record(raw)
    assert seen == [number for number, _ in lines]


def test_rule_threads_reach_prepare_processes():
    """Under Snakemake a CPU rule's threads become prepare's --processes (a GPU rule's processes stay one per
    GPU); nothing else the rule passes changes."""
    from types import SimpleNamespace

    from ftpipe.stage import args_from_snakemake

    class Named(dict):
        pass

    def smk(threads, resources):
        inputs = Named(raw="trn.json")
        outputs = Named({name: f"{name}.out" for name in ("train", "validation", "test", "counts", "rejects")})
        params = Named(seed=42)
        return SimpleNamespace(input=inputs, output=outputs, params=params, threads=threads, resources=Named(resources))

    assert args_from_snakemake(smk(6, {"mem_mb": 1000}), build_parser()).processes == 6
    assert args_from_snakemake(smk(1, {}), build_parser()).processes == 1
    assert args_from_snakemake(smk(6, {"gpu": 2}), build_parser()).processes == 2


def test_a_line_that_raises_in_a_worker_is_rejected_as_in_one_process(tmp_path, monkeypatch):
    """A line whose parsing raises (here a planted ValueError and RecursionError) is rejected with the same
    reason and detail whether it was parsed in the main process or in a worker."""
    from ftpipe.rawdata import parse_workers, repairs

    clean = repairs.clean_record

    def planted(obj, found, columns=repairs.STANDARD_COLUMNS):
        if obj["title"] == "Tutu 7":
            raise ValueError("planted")
        if obj["title"] == "Tutu 9":
            raise RecursionError("deep")
        return clean(obj, found, columns)

    monkeypatch.setattr(repairs, "clean_record", planted)  # the forked workers inherit it
    monkeypatch.setattr(parse_workers, "PARSE_BLOCK_LINES", 3)
    raw = tmp_path / "trn.json"
    raw.write_bytes(b"\n".join(line(title=f"Tutu {n}") for n in range(12)) + b"\n")
    outputs = {}
    for processes in (1, 4):
        out = tmp_path / f"p{processes}"
        out.mkdir()
        counts = prepare(args_for(raw, out, processes=processes))
        outputs[processes] = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    assert counts["rejected_reasons"] == {"nested_too_deeply": 1, "unreadable_line": 1}
    assert b"ValueError: planted" in outputs[4]["rejects.jsonl"]
    assert outputs[1] == outputs[4]


@pytest.mark.parametrize(
    "fragment",
    [
        "<p>A pink <b>tutu</b>.</p>",
        "One<br>two<BR/>three<br />four</LI>",
        "<ul><li>Soft</li><li>Light &amp; airy</li></ul>",
        "Size <5 and <br> more",
        "<b>Bold</b> <!-- note --> text",
        "<p class='x'>Styled</p> <script>x<1</script>",
        "<bold>not an element</bold>",
        "AT&T<br>&amp<br>&#38<br>&am<br>p;",
    ],
)
def test_bare_tag_shortcut_gives_the_parsers_text(fragment):
    from ftpipe.rawdata.html_text import html_text, parsed_html_text

    assert html_text(fragment) == parsed_html_text(fragment)
