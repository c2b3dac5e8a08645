"""The evaluation's generation budget (max_new_tokens) from the data: room for the reference descriptions.

A fixed budget shorter than the references cuts the model's answers mid-list, and ROUGE-L and chrF then
measure the cap as much as the model. `auto` takes a high percentile of the token lengths of the reference
responses (the response template filled with the description, stop text included: the model has to write
it to end by itself) in the train split, at most the training block length: the model never saw a longer
example. Train is read in one pass; a seeded sample of its rows is tokenized (the percentile of a few
thousand rows is as good as that of all of them).
"""

from __future__ import annotations

import math

from ftpipe.heldout import sample_rows

AUTO = "auto"
PERCENTILE = 95  # most references fit; the longest few, often spec dumps, do not set the budget alone
SAMPLE_ROWS = 4000  # rows of train tokenized for the percentile


def percentile(values: list[int], share: float) -> int:
    """The nearest-rank percentile (a value of the list, no interpolation)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share / 100 * len(ordered)) - 1)]


def reference_lengths(train_path: str, tokenizer, response_template: str, seed: int) -> list[int]:
    """Token counts of the response text of a seeded sample of train rows."""
    rows = sample_rows(train_path, SAMPLE_ROWS, seed)
    texts = [response_template.format(content=row["content"]) for row in rows]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []


def generation_budget(setting, train_path: str | None, tokenizer, response_template: str, max_len: int, seed: int):
    """(max_new_tokens, record): an integer setting as given; `auto` the PERCENTILE-th percentile of the
    train references' token lengths, at most `max_len`. The record (written to metrics.json) says how the
    budget was chosen and what the references measure."""
    if setting != AUTO:
        return int(setting), {"setting": int(setting), "max_new_tokens": int(setting)}
    lengths = reference_lengths(train_path, tokenizer, response_template, seed) if train_path else []
    record = {"setting": AUTO, "percentile": PERCENTILE, "max_len": max_len, "reference_rows": len(lengths)}
    if not lengths:
        budget = max_len  # nothing to measure: the longest example training allows
        return budget, {**record, "max_new_tokens": budget, "note": "no train rows: the budget is max_len"}
    wanted = percentile(lengths, PERCENTILE)
    record["reference_tokens"] = {
        "median": percentile(lengths, 50),
        f"p{PERCENTILE}": wanted,
        "max": max(lengths),
    }
    budget = max(1, min(wanted, max_len))
    return budget, {**record, "max_new_tokens": budget, "bounded_by_max_len": wanted > max_len}
