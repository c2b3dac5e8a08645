"""Catalogs as shops export them (tests/catalogs/: Shopify, WooCommerce, Magento, a Google Merchant feed) and
as data warehouses hand them over (Parquet), read by prepare with only data.raw set: the format recognized
by content, the title/description/id columns recognized or set (data.columns), every record accounted for."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from prepare import InputError, prepare

from tests.test_prepare import args_for

CATALOGS = Path(__file__).parent / "catalogs"


def run(raw: Path, out: Path, **overrides) -> dict:
    """prepare into `out`, every row in train (so the rows can be read back in input order)."""
    out.mkdir(parents=True, exist_ok=True)
    return prepare(args_for(raw, out, validation_fraction=0.0, test_fraction=0.0, **overrides))


def rows(out: Path, name: str = "train") -> list[dict]:
    return [json.loads(line) for line in (out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


def assert_accounted(counts: dict, records: int) -> None:
    """kept + repaired + rejected = the input records."""
    assert counts["input_lines"] == records == sum(counts["outcomes"].values())


def test_shopify_export_one_product_per_row_variants_rejected(tmp_path):
    """Shopify: Handle/Title/Body (HTML); HTML bodies quoted over several lines; a product's variant rows repeat
    its Handle with an empty Title and Body and are rejected as empty_title (the product is its first row)."""
    counts = run(CATALOGS / "shopify_products.csv", tmp_path)
    assert counts["catalog"] == {
        "format": "csv",
        "delimiter": ",",
        "columns": {"title": "Title", "content": "Body (HTML)", "uid": "Handle"},
        "columns_detected": ["title", "content", "uid"],
    }
    assert_accounted(counts, 7)  # 13 physical lines after the header
    assert counts["rejected_reasons"] == {"empty_title": 3, "empty_content": 1}  # 3 variant rows, a gift card
    tutu, apron, dripper = rows(tmp_path)
    assert (tutu["line"], tutu["uid"], tutu["title"]) == (1, "girls-ballet-tutu", "Girls Ballet Tutu - Neon Pink")
    assert (
        tutu["content"]
        == "A soft, three-layer tulle tutu for little dancers. Elastic waist, fits ages 2–8 Machine washable"
    )
    assert apron["title"] == "Linen Apron, Stonewashed"
    assert (
        apron["content"]
        == 'Our "everyday" apron in stonewashed linen & cotton. Adjustable neck strap; two front pockets.'
    )
    assert dripper["line"] == 6
    rejects = rows(tmp_path, "rejects")
    assert [(row["line"], row["first_line"]) for row in rejects] == [(2, 7), (3, 8), (5, 10), (7, 13)]
    assert rejects[0]["raw"] == "girls-ballet-tutu,,,,,,,,,M,TUTU-PNK-M,19.90,,\n"


def test_woocommerce_export_with_bom_and_escaped_newlines(tmp_path):
    """WooCommerce: a byte order mark, ID/SKU/Name/"Short description"/Description; the long description is
    the one used, its \\n escapes read as line breaks; a variation row without a description is rejected."""
    counts = run(CATALOGS / "woocommerce_products.csv", tmp_path)
    assert counts["catalog"]["columns"] == {"title": "Name", "content": "Description", "uid": "ID"}
    assert_accounted(counts, 4)
    assert counts["rejected_reasons"] == {"empty_content": 1}
    mug, board, tee = rows(tmp_path)
    assert mug["uid"] == "101" and mug["content"] == "Stoneware mug with a matte glaze. Holds 350 ml; dishwasher safe."
    assert "escaped_newlines" in counts["repairs"]
    assert board["title"] == "Oak Cutting Board, Large" and board["content"].startswith(
        "End-grain oak board, 45 × 30 cm."
    )
    assert tee["content"] == "Crew-neck T-shirt in 180 g/m² organic cotton."


def test_magento_semicolon_export(tmp_path):
    counts = run(CATALOGS / "magento_products.csv", tmp_path)
    assert counts["catalog"]["delimiter"] == ";"
    assert counts["catalog"]["columns"] == {"title": "name", "content": "description", "uid": "sku"}
    assert_accounted(counts, 3)
    lamp, vase, rug = rows(tmp_path)
    assert vase["title"] == "Glass Vase; Smoke Grey" and vase["content"] == "Mouth-blown glass vase, 25 cm tall."
    assert rug["uid"] == "MG-RUG-03"


def test_tsv_feed(tmp_path):
    counts = run(CATALOGS / "google_merchant_feed.tsv", tmp_path)
    assert counts["catalog"]["format"] == "tsv" and counts["catalog"]["delimiter"] == "\t"
    assert_accounted(counts, 2)
    tote, beanie = rows(tmp_path)
    assert tote["content"] == 'A waxed canvas tote with leather handles; fits a 15" laptop.'
    assert beanie["content"] == "Merino wool beanie, ribbed; one size."


def test_delimiter_and_columns_from_the_configuration(tmp_path):
    """data.delimiter and data.columns override what is recognized: here the short description is used."""
    raw = tmp_path / "products.txt"
    raw.write_text("id|name|Short description|Description\n1|Mug|Short.|Long, with a comma; and more.\n")
    counts = run(raw, tmp_path / "out", columns={"content": "Short description"}, delimiter="|")
    assert counts["catalog"]["columns"] == {"title": "name", "content": "Short description", "uid": "id"}
    assert counts["catalog"]["columns_detected"] == ["title", "uid"]
    assert rows(tmp_path / "out")[0]["content"] == "Short."


def test_a_configured_column_the_file_lacks_stops_with_one_line(tmp_path):
    with pytest.raises(InputError) as stop:
        run(CATALOGS / "magento_products.csv", tmp_path, columns={"title": "product_name"})
    message = str(stop.value)
    assert "\n" not in message
    assert message.startswith(f"{CATALOGS / 'magento_products.csv'}: data.columns.title is 'product_name', which is")
    assert "its CSV header: 'sku', 'store_view_code'," in message


def test_a_file_without_a_title_column_lists_its_columns(tmp_path):
    raw = tmp_path / "export.csv"
    raw.write_text("Handle,Vendor,Body (HTML)\ntutu,Petal,<p>Pink.</p>\n")
    with pytest.raises(InputError, match=r"^\S+export\.csv: no title column found; its CSV header: 'Handle', "):
        run(raw, tmp_path / "out")


def write_parquet(path: Path, rows_by_column: dict, row_group_size: int | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(rows_by_column), path, row_group_size=row_group_size)


def test_parquet_read_by_batches_with_warehouse_names(tmp_path, monkeypatch):
    """Parquet (several row groups, read in batches smaller than the file): product_name/long_description/asin,
    a null title rejected, a number title rejected, the same splits whatever the batch size."""
    from ftpipe.rawdata import parquet_rows

    raw = tmp_path / "products.parquet"
    n = 50
    write_parquet(
        raw,
        {
            "asin": [f"B{i:09d}" for i in range(n)],
            "product_name": [None if i == 7 else f"Product {i}" for i in range(n)],
            "long_description": [f"<p>Description of product {i} &amp; more.</p>" for i in range(n)],
            "price": [float(i) for i in range(n)],
        },
        row_group_size=16,
    )
    outputs = []
    for batch in (7, 4096):
        monkeypatch.setattr(parquet_rows, "BATCH_ROWS", batch)
        counts = run(raw, tmp_path / f"b{batch}")
        outputs.append([(tmp_path / f"b{batch}" / name).read_bytes() for name in ("train.jsonl", "rejects.jsonl")])
    assert outputs[0] == outputs[1]
    assert counts["catalog"] == {
        "format": "parquet",
        "columns": {"title": "product_name", "content": "long_description", "uid": "asin"},
        "columns_detected": ["title", "content", "uid"],
    }
    assert_accounted(counts, n)
    assert counts["rejected_reasons"] == {"null_title": 1}
    first = rows(tmp_path / "b7")[0]
    assert first == {**first, "line": 1, "uid": "B000000000", "content": "Description of product 0 & more."}
    (reject,) = rows(tmp_path / "b7", "rejects")
    assert reject["line"] == 8 and json.loads(reject["raw"])["asin"] == "B000000007"


@pytest.mark.parametrize("packing", ["gzip", "zip"])
def test_compressed_csv_and_parquet_read_as_their_content(tmp_path, packing):
    import zipfile

    parquet = tmp_path / "plain.parquet"
    write_parquet(parquet, {"title": ["Mug", "Bowl"], "description": ["A mug.", "A bowl."]})
    for plain in (CATALOGS / "shopify_products.csv", parquet):
        packed = tmp_path / f"{plain.stem}.data"  # the name says nothing: the content does
        if packing == "gzip":
            with open(plain, "rb") as source, gzip.open(packed, "wb") as target:
                shutil.copyfileobj(source, target)
        else:
            with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.write(plain, plain.name)
        counts = run(packed, tmp_path / f"{plain.stem}-packed")
        run(plain, tmp_path / f"{plain.stem}-plain")
        assert counts["source_sha256"] == hashlib.sha256(packed.read_bytes()).hexdigest()
        for name in ("train.jsonl", "rejects.jsonl"):
            assert (tmp_path / f"{plain.stem}-packed" / name).read_bytes() == (
                tmp_path / f"{plain.stem}-plain" / name
            ).read_bytes()


def test_json_lines_with_other_names(tmp_path):
    """A JSON Lines file with name/description/sku reads like a CSV with those columns."""
    raw = tmp_path / "products.jsonl"
    lines = [{"sku": "S1", "name": "Mug", "description": "A mug."}, {"sku": "S2", "name": "", "description": "x"}]
    raw.write_text("".join(json.dumps(line) + "\n" for line in lines))
    counts = run(raw, tmp_path / "out")
    assert counts["catalog"]["format"] == "json_lines"
    assert counts["catalog"]["columns"] == {"title": "name", "content": "description", "uid": "sku"}
    assert counts["rejected_reasons"] == {"empty_title": 1}
    assert rows(tmp_path / "out")[0] == {**rows(tmp_path / "out")[0], "uid": "S1", "title": "Mug", "content": "A mug."}


def test_json_array_with_configured_columns(tmp_path):
    raw = tmp_path / "products.json"
    raw.write_text(json.dumps([{"Product": "Mug", "Text": "A mug.", "name": "not this"}]))
    counts = run(raw, tmp_path / "out", columns={"title": "Product", "content": "Text"})
    assert counts["catalog"]["format"] == "json_array"
    assert rows(tmp_path / "out")[0]["title"] == "Mug"


def test_csv_records_split_across_read_blocks(tmp_path, monkeypatch):
    """Records whose quoted fields span lines, CRLF ends, a CR/LF pair cut between two reads: the same records
    whatever the read size."""
    from ftpipe.rawdata import delimited

    data = (CATALOGS / "shopify_products.csv").read_bytes().replace(b"\n", b"\r\n")
    raw = tmp_path / "export.csv"
    raw.write_bytes(data)
    outputs = []
    for block in (1, 2, 5, 64, 1 << 20):
        monkeypatch.setattr(delimited, "READ_BYTES", block)
        counts = run(raw, tmp_path / f"b{block}")
        outputs.append([(tmp_path / f"b{block}" / f).read_bytes() for f in ("train.jsonl", "rejects.jsonl")])
        assert_accounted(counts, 7)
    assert all(output == outputs[0] for output in outputs)


def test_csv_in_worker_processes_gives_the_one_process_outputs(tmp_path, monkeypatch):
    """The CSV record parser goes to the parsing workers (pickled) and gives the same bytes as one process."""
    from ftpipe.rawdata import parse_workers

    monkeypatch.setattr(parse_workers, "PARSE_BLOCK_LINES", 2)
    outputs = {}
    for processes in (1, 4):
        counts = run(CATALOGS / "shopify_products.csv", tmp_path / f"p{processes}", processes=processes)
        outputs[processes] = [(tmp_path / f"p{processes}" / f).read_bytes() for f in ("train.jsonl", "rejects.jsonl")]
    assert outputs[1] == outputs[4] and counts["outcomes"]["repaired"] == 3


def test_a_csv_named_json_is_read_as_csv(tmp_path):
    raw = tmp_path / "trn.json"
    shutil.copy(CATALOGS / "magento_products.csv", raw)
    assert run(raw, tmp_path / "out")["catalog"]["format"] == "csv"


@pytest.mark.parametrize(
    "header, delimiter",
    [("a,b,c", ","), ("a;b;c", ";"), ("a\tb\tc", "\t"), ("a|b|c", "|"), ('"x, y";b;c', ";"), ("title", ",")],
)
def test_delimiter_is_the_most_frequent_outside_quotes(header, delimiter):
    from ftpipe.rawdata.delimited import sniff_delimiter

    assert sniff_delimiter(header) == delimiter


@pytest.mark.parametrize(
    "names, expected",
    [
        (["Handle", "Title", "Body (HTML)"], {"title": "Title", "content": "Body (HTML)", "uid": "Handle"}),
        (["ID", "SKU", "Name", "Description"], {"title": "Name", "content": "Description", "uid": "ID"}),
        (["Product Name", "body_html", "ASIN"], {"title": "Product Name", "content": "body_html", "uid": "ASIN"}),
        (
            ["product_title", "product_description"],
            {"title": "product_title", "content": "product_description", "uid": None},
        ),
        (["name", "title", "description", "content"], {"title": "title", "content": "content", "uid": None}),
    ],
)
def test_common_column_names_are_recognized(names, expected):
    from ftpipe.rawdata.columns import choose_columns

    assert choose_columns("f.csv", names, None, "CSV header") == (expected, ["title", "content", "uid"])


def test_excel_sep_line_names_the_delimiter_and_is_not_a_record(tmp_path):
    raw = tmp_path / "excel.csv"
    raw.write_bytes(b"sep=;\r\nName;Description\r\nMug;A mug, blue.\r\nBowl;\r\n")
    counts = run(raw, tmp_path / "out")
    assert counts["catalog"]["delimiter"] == ";" and counts["catalog"]["columns"]["title"] == "Name"
    assert_accounted(counts, 2)
    (reject,) = rows(tmp_path / "out", "rejects")
    assert (reject["line"], reject["first_line"], reject["reason"]) == (2, 4, "empty_content")


@pytest.mark.parametrize("delimiter", ["tab", "\\t", "\t"])
def test_a_tab_delimiter_may_be_named(delimiter, tmp_path):
    counts = run(CATALOGS / "google_merchant_feed.tsv", tmp_path, delimiter=delimiter)
    assert counts["catalog"]["delimiter"] == "\t" and counts["outcomes"]["kept"] == 2


def test_a_delimiter_of_several_characters_stops_with_one_line(tmp_path):
    with pytest.raises(InputError, match=r"google_merchant_feed\.tsv: data\.delimiter must be one character"):
        run(CATALOGS / "google_merchant_feed.tsv", tmp_path, delimiter="||")
