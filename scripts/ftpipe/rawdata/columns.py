"""Which of a catalog's columns (CSV header, Parquet schema, JSON keys) hold the title, the description and the
product id: the ones the configuration names (data.columns), else the first of the common names found.

Names are compared without case, and spaces, underscores and hyphens count alike ("Product Name" is
product_name).
"""

from __future__ import annotations

import re

from ftpipe.rawdata.raw_input import InputError

CANONICAL = ("title", "content", "uid")
# Common names, in order of preference: AmazonTitles, Shopify (Title, Body (HTML), Handle), WooCommerce (Name,
# Description, ID, SKU), Magento (name, description, sku), and what data warehouses call them.
COMMON_NAMES = {
    "title": ("title", "name", "product_name", "product_title"),
    "content": ("content", "description", "product_description", "body_(html)", "body_html", "long_description"),
    "uid": ("uid", "id", "sku", "asin", "handle", "product_id"),
}
REQUIRED = ("title", "content")
WHAT = {"title": "title", "content": "description", "uid": "product id"}


def normalized(name: str) -> str:
    return re.sub(r"[\s_-]+", "_", name.strip().lower())


def choose_columns(path, names: list[str], configured: dict | None, what: str) -> tuple[dict, list[str]]:
    """(canonical name -> source column (None: the source has no product id), the canonical names that were
    detected rather than configured). Stops with one line naming the file and listing its columns when a
    configured column is not among `names` or no title or description column is found. `what` says what
    the names are ("CSV header", "Parquet columns", "JSON keys")."""
    configured = configured or {}
    chosen, detected = {}, []
    for canonical in CANONICAL:
        name = configured.get(canonical)
        if name is not None:
            if name not in names:
                raise InputError(
                    f"{path}: data.columns.{canonical} is {name!r}, which is not a column of the file; "
                    f"its {what}: {_listed(names)}"
                )
            chosen[canonical] = name
            continue
        chosen[canonical] = detect(names, canonical)
        detected.append(canonical)
    missing = [canonical for canonical in REQUIRED if chosen[canonical] is None]
    if missing:
        wanted = " and no ".join(f"{WHAT[canonical]} column" for canonical in missing)
        keys = ", ".join(f"data.columns.{canonical}" for canonical in missing)
        raise InputError(f"{path}: no {wanted} found; its {what}: {_listed(names)} (name it with {keys})")
    return chosen, detected


def detect(names: list[str], canonical: str) -> str | None:
    """The column of `names` with the most preferred common name of `canonical`, or None."""
    by_normalized: dict[str, str] = {}
    for name in names:
        if isinstance(name, str):
            by_normalized.setdefault(normalized(name), name)
    for common in COMMON_NAMES[canonical]:
        if common == canonical and canonical in names:
            return canonical  # the exact name first: AmazonTitles' own files read as they always have
        if common in by_normalized:
            return by_normalized[common]
    return None


def _listed(names: list[str], most: int = 40) -> str:
    if not names:
        return "none"
    shown = ", ".join(repr(name) if isinstance(name, str) else str(name) for name in names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")
