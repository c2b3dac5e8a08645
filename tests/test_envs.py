"""The conda environments (envs/*.yaml, for --sdm conda) pin the same versions as requirements.txt."""

import re

import yaml

from tests.conftest import ROOT

PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)")


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        match = PIN.match(line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def test_every_env_pin_matches_requirements():
    required = pins((ROOT / "requirements.txt").read_text().splitlines())
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        pip = next(item["pip"] for item in spec["dependencies"] if isinstance(item, dict) and "pip" in item)
        env_pins = pins(pip)
        assert env_pins, env
        assert {name: required.get(name) for name in env_pins} == env_pins, env.name


def test_every_rule_names_an_existing_env():
    for rule_file in (ROOT / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"\.\./(envs/[^"]+)"', rule_file.read_text()):
            assert (ROOT / env).exists(), (rule_file.name, env)
