"""Batched generation with left padding and KV cache, stopping at the end of the model's turn.

Shared by the generation stage, the metrics stage and the ask command, so all prompt and stop the same way.
"""

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .modeling import DEFAULT_QUANTIZATION
from .prompts import cut_at_stop
from .stage import json_arg


def add_generation_args(parser) -> None:
    """Command-line options shared by the stages that generate (generate, metrics)."""
    add = parser.add_argument
    add("--model-dir", required=True, help="base model folder")
    add("--adapter", required=True, help="adapter folder")
    add("--max-new-tokens", type=int, default=128)
    add("--repetition-penalty", type=float, default=1.1)
    add("--stop-strings", nargs="*", default=["<end_of_turn>", "<eos>"])
    add("--seed", type=int, default=42)
    add("--batch-size", type=int, default=16)
    add("--instruction-template", required=True, help="tagged prompt with {title}")
    add("--base-prompt-template", required=True, help="plain prompt for the base model, with {title}")
    add("--quantization", type=json_arg, default=DEFAULT_QUANTIZATION, help="JSON, as in training")


class StopOnText(StoppingCriteria):
    """Marks a row done once its generated text contains a stop string. Decoding the last few tokens of
    each row is much cheaper than transformers' StopStringCriteria on a CPU."""

    def __init__(self, tokenizer, stop_strings: list[str], prompt_length: int):
        self.tokenizer, self.stop_strings, self.prompt_length = tokenizer, stop_strings, prompt_length
        self.window = max(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in stop_strings) + 2

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        tails = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :][:, -self.window :])
        return torch.tensor(
            [any(stop in tail for stop in self.stop_strings) for tail in tails], device=input_ids.device
        )


@torch.no_grad()
def generate_texts(model, tokenizer, prompts: list[str], settings: dict, batch_size: int = 16) -> list[str]:
    """Generate one continuation per prompt; `settings` holds max_new_tokens, do_sample, temperature,
    top_p, repetition_penalty, stop_strings and seed."""
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    torch.manual_seed(settings["seed"])
    texts: list[str] = []
    sampling = {"temperature": settings["temperature"], "top_p": settings["top_p"]} if settings["do_sample"] else {}
    stops = list(settings["stop_strings"])
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(device)
        prompt_length = batch["input_ids"].shape[1]
        criteria = StoppingCriteriaList([StopOnText(tokenizer, stops, prompt_length)] if stops else [])
        output = model.generate(
            **batch,
            max_new_tokens=settings["max_new_tokens"],
            do_sample=settings["do_sample"],
            repetition_penalty=settings["repetition_penalty"],
            stopping_criteria=criteria,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
        for row in tokenizer.batch_decode(output[:, prompt_length:], skip_special_tokens=True):
            texts.append(cut_at_stop(row, stops))
    return texts
