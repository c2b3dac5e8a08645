"""Real public product catalogs as JSON Lines (title, content) for bench/quality.py.

Each catalog is a CSV file in a public repository (docs/quality.md: where each comes from, its licence, the
command that fetches it). This script reads the fetched file and writes one JSON object per product with
the catalog's title and description columns; rows whose title or description is empty are skipped and
counted. The workflow's prepare stage does the rest (HTML, entities, duplicates, splits), as for any file.

    python bench/catalogs.py magento  <products.csv> [<more gear CSVs>] bench/work/catalogs/magento.jsonl
    python bench/catalogs.py flipkart <flipkart_com-ecommerce_sample.csv> bench/work/catalogs/flipkart.jsonl
    python bench/catalogs.py amazon2020 <test_sample_1000.csv> bench/work/catalogs/amazon2020.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

csv.field_size_limit(sys.maxsize)  # marketplace descriptions run past the default 128 kB field limit

# catalog -> (title column, description column, row filter)
CATALOGS = {
    # Magento 2's Luma store: configurable parents carry the product (their size/colour children repeat its
    # description); the gear CSVs hold simple products only.
    "magento": ("name", "description", lambda row: row.get("product_type", "configurable") == "configurable"),
    "flipkart": ("product_name", "description", lambda row: True),
    "amazon2020": ("Product Name", "About Product", lambda row: True),
}


def convert(catalog: str, sources: list[Path], out: Path) -> dict:
    """Write the catalog's products to `out`; return the counts (written, skipped for an empty field)."""
    title_column, content_column, keep = CATALOGS[catalog]
    written = skipped = filtered = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for source in sources:
            with open(source, encoding="utf-8", errors="replace", newline="") as rows:
                for row in csv.DictReader(rows):
                    if not keep(row):
                        filtered += 1
                        continue
                    title, content = (row.get(title_column) or "").strip(), (row.get(content_column) or "").strip()
                    if not title or not content:
                        skipped += 1
                        continue
                    handle.write(json.dumps({"title": title, "content": content}, ensure_ascii=False) + "\n")
                    written += 1
    tmp.replace(out)
    return {"catalog": catalog, "written": written, "skipped_empty": skipped, "filtered": filtered}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("catalog", choices=sorted(CATALOGS))
    parser.add_argument("files", type=Path, nargs="+", help="the fetched CSV file(s), then the JSON Lines output")
    args = parser.parse_args()
    if len(args.files) < 2:
        parser.error("give the CSV file(s) and the output file")
    print(json.dumps(convert(args.catalog, args.files[:-1], args.files[-1])))


if __name__ == "__main__":
    main()
