"""The scored generations' decoding settings metrics.no_repeat_ngram_size and metrics.num_beams: passed to
`generate` only where they change something, and recorded in metrics.json's settings."""

from __future__ import annotations

import torch

from ftpipe.generation import generate_new_ids, generate_with_endings
from ftpipe.modeling import DEFAULT_QUANTIZATION, load_for_inference, load_tokenizer, merge_adapter
from tests.test_evaluation import (
    GREEDY,
    adapter_dir,  # noqa: F401 (the fixture of a random LoRA adapter)
    catalog_splits,
    evaluate,
    prompts,
)


def merged_model(tiny_model_dir, adapter_dir):  # noqa: F811
    cpu = torch.device("cpu")
    model = merge_adapter(load_for_inference(str(tiny_model_dir), DEFAULT_QUANTIZATION, cpu), str(adapter_dir))
    return model, load_tokenizer(str(adapter_dir))


def repeated_bigrams(ids: list[int], pad_id: int) -> int:
    """How many token bigrams of a row occur again later in it (a row's padding after its end not counted)."""
    while ids and ids[-1] == pad_id:
        ids = ids[:-1]
    bigrams = list(zip(ids, ids[1:], strict=False))
    return len(bigrams) - len(set(bigrams))


def test_no_repeat_ngram_size_leaves_no_token_bigram_twice(tiny_model_dir, adapter_dir):  # noqa: F811
    model, tokenizer = merged_model(tiny_model_dir, adapter_dir)
    # Greedy decoding of the random tiny model without a repetition penalty loops: the check can fail.
    settings = {**GREEDY, "max_new_tokens": 40, "repetition_penalty": 1.0}
    free = generate_new_ids(model, tokenizer, prompts(), settings, batch_size=3)
    assert sum(repeated_bigrams(row.tolist(), tokenizer.pad_token_id) for row in free) > 0
    rows = generate_new_ids(model, tokenizer, prompts(), {**settings, "no_repeat_ngram_size": 2}, batch_size=3)
    assert [repeated_bigrams(row.tolist(), tokenizer.pad_token_id) for row in rows] == [0] * len(prompts())
    # The off value (0) changes nothing.
    off = generate_new_ids(model, tokenizer, prompts(), {**settings, "no_repeat_ngram_size": 0}, batch_size=3)
    assert all(torch.equal(a, b) for a, b in zip(free, off, strict=True))


def test_beam_search_gives_one_text_per_prompt_with_endings(tiny_model_dir, adapter_dir):  # noqa: F811
    model, tokenizer = merged_model(tiny_model_dir, adapter_dir)
    settings = {**GREEDY, "max_new_tokens": 8}
    texts, ended = generate_with_endings(model, tokenizer, prompts(), {**settings, "num_beams": 2}, batch_size=3)
    assert len(texts) == len(ended) == len(prompts()) and all(isinstance(text, str) for text in texts)
    assert ended == [False] * len(texts)  # no stop string, and the random model writes no end token
    # A stop string that some beam texts hold: those rows end by themselves and are cut there.
    characters = sorted({c for text in texts for c in text if c.isalpha()})
    stop = next(c for c in characters if 0 < sum(c in text for text in texts) < len(texts))
    cut, cut_ended = generate_with_endings(
        model, tokenizer, prompts(), {**settings, "num_beams": 2, "stop_strings": [stop]}, batch_size=3
    )
    assert any(cut_ended) and all(stop not in text for text in cut)
    assert all(ended_row or stop not in text for text, ended_row in zip(cut, cut_ended, strict=True))


def test_metrics_records_the_decoding_settings(tmp_path, tiny_model_dir, adapter_dir):  # noqa: F811
    splits = catalog_splits(tmp_path)
    settings = evaluate(
        tmp_path, tiny_model_dir, adapter_dir, splits, num_titles=3, no_repeat_ngram_size=3, num_beams=2
    )["settings"]
    assert settings["no_repeat_ngram_size"] == 3 and settings["num_beams"] == 2 and settings["do_sample"] is False
