"""The user documentation: a short README, links that lead somewhere, and commands that name what exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages the README links that other parts of the project write; a link to any other missing file is broken.
PAGES_WRITTEN_ELSEWHERE = {
    "docs/catalogs.md",
    "docs/models.md",
    "docs/prompts.md",
    "docs/splits.md",
    "docs/quality.md",
    "docs/developing.md",
}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
# The files a user may ask Snakemake for (rules/report.smk and rules/export.smk).
TARGETS = (r"results/report\.html", r"results/compare\.(html|json|csv)", r"results/runs/(?P<run>[^/]+)/merged")


def test_the_readme_is_a_short_guide():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move reference material to docs/"


def relative_links(page: Path) -> list[str]:
    links = LINK.findall(page.read_text(encoding="utf-8"))
    return [link.split("#")[0] for link in links if not re.match(r"[a-z]+:|#", link)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file(page):
    broken = []
    for link in relative_links(page):
        target = (page.parent / link).resolve()
        if not target.exists() and target.relative_to(ROOT).as_posix() not in PAGES_WRITTEN_ELSEWHERE:
            broken.append(link)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_the_readme_links_every_reference_page():
    linked = {(ROOT / link).resolve().relative_to(ROOT).as_posix() for link in relative_links(ROOT / "README.md")}
    pages = {page.relative_to(ROOT).as_posix() for page in (ROOT / "docs").glob("*.md")}
    assert pages | PAGES_WRITTEN_ELSEWHERE | {"bench/README.md"} <= linked


def commands(page: Path) -> list[list[str]]:
    """Each command of the page's bash blocks (a line, or lines joined by a trailing backslash), split as the
    shell splits it (comments dropped)."""
    text = page.read_text(encoding="utf-8")
    blocks = [block.replace("\\\n", " ") for block in CODE_BLOCK.findall(text)]
    return [shlex.split(line, comments=True) for block in blocks for line in block.splitlines()]


# Snakemake's options that read every word after them, and those that read one; any other option is a flag.
MANY_VALUES = {"--config", "--configfile", "--forcerun", "-R", "--until", "-U", "--omit-from", "-O", "--set-threads"}
ONE_VALUE = {"--cores", "-c", "--jobs", "-j", "--workflow-profile", "--profile", "--directory", "-d", "--report"}
NO_TARGET = {"--report", "--lint", "--list-rules", "--unlock"}


def snakemake_parts(words: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The targets of a snakemake command line and each option's values. Snakemake reads every word after
    --config or --configfile as one of their values, so a target there is not a target."""
    targets, values = [], {}
    option = None
    for word in words[1:]:
        if word.startswith("-"):
            option = word
            values.setdefault(option, [])
            continue
        if option in MANY_VALUES or option in ONE_VALUE:
            values[option].append(word)
            option = option if option in MANY_VALUES else None
        else:
            targets.append(word)
    return targets, values


def merged(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


SNAKEMAKE_COMMANDS = [
    pytest.param(words, id=f"{page.relative_to(ROOT)}: {shlex.join(words)}")
    for page in PAGES
    for words in commands(page)
    if words[:1] == ["snakemake"]
]


@pytest.mark.parametrize("words", SNAKEMAKE_COMMANDS)
def test_a_documented_snakemake_command_names_what_exists(words):
    from ftpipe.workflow.config_check import config_problems

    targets, values = snakemake_parts(words)
    files = values.get("--configfile", [])
    pairs = {
        key: yaml.safe_load(value) for key, _, value in (pair.partition("=") for pair in values.get("--config", []))
    }
    assert targets or NO_TARGET & set(values), "no target before --config/--configfile (read as a config value)"
    for path in files + values.get("--workflow-profile", []):
        assert (ROOT / path).exists(), f"{path} does not exist"
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    for path in files:
        config = merged(config, yaml.safe_load((ROOT / path).read_text(encoding="utf-8")))
    config = merged(config, pairs)
    schema = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))
    assert config_problems(config, schema) == []
    runs = {config["run_name"], *config.get("experiment", {}).get("runs", {})}
    for target in targets:
        match = next((m for pattern in TARGETS if (m := re.fullmatch(pattern, target))), None)
        assert match, f"{target} is no output a user can ask for"
        assert match.groupdict().get("run") in (None, *runs), f"{target}: no run of that name in its configuration"


PYTHON_COMMANDS = [
    pytest.param(words, id=f"{page.relative_to(ROOT)}: {shlex.join(words)}")
    for page in PAGES
    for words in commands(page)
    if words[:1] in (["python"], ["python3"])
]


@pytest.mark.parametrize("words", PYTHON_COMMANDS)
def test_a_documented_python_command_names_files_that_exist(words):
    paths = [word for word in words[1:] if re.fullmatch(r"(scripts|tests|bench)/[\w/.-]+\.py", word)]
    assert paths or "-m" in words, "a script path or a module"
    for path in paths:
        assert (ROOT / path).exists(), f"{path} does not exist"


def test_the_parser_sees_a_target_after_config_as_a_config_value():
    targets, values = snakemake_parts(
        shlex.split("snakemake -n --cores 8 --configfile presets/tinyllama.yaml results/report.html")
    )
    assert targets == [] and values["--configfile"] == ["presets/tinyllama.yaml", "results/report.html"]
