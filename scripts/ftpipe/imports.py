"""The code a stage script runs: the modules of scripts/ it imports, directly or through each other.

Snakemake tracks a rule's own script but not what the script imports, so the workflow makes these files
inputs of the rule (an edit to one reruns the stages that run it, and only those); training fingerprints
its checkpoints with the same files. Read from the source (ast), never by importing it: the workflow side
does not load torch to plan a run.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]


def imported_modules(script: str | Path, scripts_dir: str | Path = SCRIPTS) -> list[Path]:
    """The files under `scripts_dir` that `script` imports, transitively, sorted (the script itself excluded).
    Imports inside functions count: they run when the function does."""
    scripts_dir = Path(scripts_dir).resolve()
    start = Path(script).resolve()
    found: set[Path] = set()
    pending = [start]
    while pending:
        for module in _direct_imports(pending.pop(), scripts_dir):
            if module not in found and module != start:
                found.add(module)
                pending.append(module)
    return sorted(found)


def _direct_imports(file: Path, scripts_dir: Path) -> frozenset[Path]:
    """The files under `scripts_dir` that the import statements of `file` name."""
    status = file.stat()
    return _parsed_imports(file, scripts_dir, status.st_mtime_ns, status.st_size)


# The workflow asks for every rule's script, and the scripts share their modules: each file is parsed once
# while it stays the same (its modification time and size are part of the key).
@functools.cache
def _parsed_imports(file: Path, scripts_dir: Path, _mtime_ns: int, _size: int) -> frozenset[Path]:
    names: set[str] = set()
    package = _package_of(file, scripts_dir)
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            names.add(base)
            # `from ftpipe import stage` imports the module ftpipe.stage (a name that is no module is skipped below).
            names.update(f"{base}.{alias.name}" for alias in node.names if base)
    files = set()
    for name in names:
        for prefix in _prefixes(name):  # importing ftpipe.io runs ftpipe/__init__.py first
            module = _file_of(prefix, scripts_dir)
            if module is not None:
                files.add(module)
    return frozenset(files)


def _package_of(file: Path, scripts_dir: Path) -> str:
    """The package a file's relative imports start from (ftpipe for ftpipe/io.py and ftpipe/__init__.py; none
    for a script, or for Snakemake's copy of a script under .snakemake/scripts/)."""
    if not file.is_relative_to(scripts_dir):
        return ""
    return ".".join(file.relative_to(scripts_dir).parts[:-1])


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The absolute module name of a `from  import`, relative ones resolved against the file's package."""
    if not node.level:
        return node.module or ""
    parts = package.split(".") if package else []
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def _file_of(name: str, scripts_dir: Path) -> Path | None:
    """The file of a module inside `scripts_dir`, or None for one outside it (the standard library, torch)."""
    if not name:
        return None
    path = scripts_dir.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None
