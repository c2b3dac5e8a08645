"""The catalog generator reads its vocabulary from data/catalog_vocabulary.txt and still makes the shipped
demo catalog byte for byte."""

import subprocess
import sys

from tests.conftest import ROOT


def test_the_demo_catalog_is_what_the_generator_makes(tmp_path):
    out = tmp_path / "demo.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_catalog.py"), "--demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (ROOT / "data" / "sample_catalog.json").read_bytes()


def test_every_category_of_the_vocabulary_file_is_read():
    from make_catalog import CATEGORIES, read_specs

    specs = read_specs()
    sections = [
        line[1:-1]
        for line in (ROOT / "data" / "catalog_vocabulary.txt").read_text().splitlines()
        if line.startswith("[")
    ]
    assert list(specs) == sections == [category.name for category in CATEGORIES]
    assert all(text.count("\n") > 5 for text in specs.values())
