"""Batched generation with left padding and KV cache, stopping at the end of the model's turn.

Shared by the generation stage and the ask command, so both prompt and stop the same way.
"""

from __future__ import annotations

import torch

from .prompts import cut_at_stop


@torch.no_grad()
def generate_texts(model, tokenizer, prompts: list[str], settings: dict, batch_size: int = 16) -> list[str]:
    """Generate one continuation per prompt; `settings` holds max_new_tokens, do_sample, temperature,
    top_p, repetition_penalty, stop_strings and seed."""
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    torch.manual_seed(settings["seed"])
    texts: list[str] = []
    sampling = {"temperature": settings["temperature"], "top_p": settings["top_p"]} if settings["do_sample"] else {}
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(device)
        output = model.generate(
            **batch,
            max_new_tokens=settings["max_new_tokens"],
            do_sample=settings["do_sample"],
            repetition_penalty=settings["repetition_penalty"],
            stop_strings=list(settings["stop_strings"]) or None,
            tokenizer=tokenizer,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        for row in tokenizer.batch_decode(new_tokens, skip_special_tokens=True):
            texts.append(cut_at_stop(row, settings["stop_strings"]))
    return texts
