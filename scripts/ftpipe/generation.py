"""Batched generation with left padding and KV cache, stopping at the end of the model's turn.

Shared by the generation stage, the metrics stage and the ask command, so all prompt and stop the same way.
Prompts are generated longest first in batches of similar length (less padding; the results come back in
the prompts' order), and on a GPU the batches are large: decoding one token costs about the same for 32
rows as for 256, so rows per batch is most of the speed (bench/README.md).
"""

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ftpipe.compile_cache import use_compile_cache
from ftpipe.prompts import PromptFormat, PromptFormatError, cut_at_stop


def add_generation_args(parser, adapter: bool = True) -> None:
    """Command-line options shared by the stages that generate (generate, base_samples, base_eval, metrics)
    besides their settings (ftpipe.settings.add_options); base_samples and base_eval run the base model alone
    (`adapter=False`)."""
    add = parser.add_argument
    add("--model-dir", required=True, help="base model folder")
    if adapter:
        add("--adapter", required=True, help="adapter folder")
    add("--threads", type=int, default=None, help="CPU threads for torch (the rule's threads); default all")


def prompt_format_of(args, tokenizer) -> PromptFormat:
    """The prompt format of a generating stage's arguments (its settings), as tokenize applied it."""
    try:
        return PromptFormat(
            args.instruction_template, args.response_template, args.prompt_format, args.stop_strings, tokenizer
        )
    except PromptFormatError as err:
        raise SystemExit(str(err)) from None


AUTO_BATCH_CPU = 16  # a CPU gains little from more rows
AUTO_BATCH_GPU_MAX = 1024  # the largest batch bench/generation.py measures; a GPU keeps gaining up to hundreds
KV_CACHE_SHARE = 0.25  # of the GPU's free memory; the rest is for weights' workspace and activations


def resolve_batch_size(value, model, tokens_per_row: int) -> int:
    """The rows per batch: an integer as given; `auto` is AUTO_BATCH_CPU on a CPU and, on a GPU, as many
    rows as fit their KV cache (`tokens_per_row` each) in a quarter of the free memory, up to
    AUTO_BATCH_GPU_MAX: decoding a token costs about the same for 32 rows as for hundreds."""
    if value not in (None, "auto"):
        return int(value)
    device = next(model.parameters()).device
    if device.type != "cuda":
        return AUTO_BATCH_CPU
    free, _ = torch.cuda.mem_get_info(device)
    fits = int(KV_CACHE_SHARE * free) // (kv_cache_bytes_per_token(model) * max(1, tokens_per_row))
    return max(1, min(AUTO_BATCH_GPU_MAX, fits))


def kv_cache_bytes_per_token(model) -> int:
    """Keys and values of one token across all layers."""
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * next(model.parameters()).element_size()


class StopOnText(StoppingCriteria):
    """Marks a row done once its generated text contains a stop string. Decoding the last few tokens of
    each row is much cheaper than transformers' StopStringCriteria on a CPU; and only rows whose newest
    token holds a stop string's last character are decoded (a stop string first appears at the step that
    writes its last character), which keeps large GPU batches from waiting on the tokenizer every step."""

    def __init__(self, tokenizer, stop_strings: list[str], prompt_length: int, may_end=None):
        self.tokenizer, self.stop_strings, self.prompt_length = tokenizer, stop_strings, prompt_length
        self.window = max(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in stop_strings) + 2
        self.may_end = stop_end_mask(tokenizer, stop_strings) if may_end is None else may_end

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        may_end, newest = self.may_end.to(input_ids.device), input_ids[:, -1]  # .to: a no-op once on the device
        known = len(may_end)
        candidate = (newest >= known) | may_end[newest.clamp(max=known - 1)]  # ids past the tokenizer: check them
        rows = candidate.nonzero().flatten()
        if len(rows):
            tails = self.tokenizer.batch_decode(input_ids[rows, self.prompt_length :][:, -self.window :])
            hits = [any(stop in tail for stop in self.stop_strings) for tail in tails]
            done[rows] = torch.tensor(hits, device=input_ids.device)
        return done


def stop_end_mask(tokenizer, stop_strings: list[str]) -> torch.Tensor:
    """Per token id: whether its text holds the last character of a stop string (or an incomplete
    character, which may be one), i.e. whether a stop string can be completed by generating it."""
    finals = {stop[-1] for stop in stop_strings if stop}
    texts = tokenizer.batch_decode([[token] for token in range(len(tokenizer))])
    return torch.tensor([any(c in text for c in finals) or "\ufffd" in text for text in texts], dtype=torch.bool)


def prompt_lengths(tokenizer, prompts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(prompts, add_special_tokens=True)["input_ids"]]


def longest_first(lengths: list[int]) -> list[int]:
    """Prompt indices by token count, longest first (ties in prompt order): batches of similar lengths pad
    less, and the largest batch comes first, so running out of memory shows at once."""
    return sorted(range(len(lengths)), key=lambda index: (-lengths[index], index))


DECODING_OFF = {"no_repeat_ngram_size": 0, "num_beams": 1}  # setting -> its value that changes nothing


@torch.no_grad()
def generate_new_ids(
    model, tokenizer, prompts: list[str], settings: dict, batch_size="auto", sort_by_length: bool = True
) -> list[torch.Tensor]:
    """The new token ids of each prompt, in the prompts' order (a row that stopped early is padded with the
    pad id, as `generate` leaves it). `settings` holds max_new_tokens, do_sample, temperature, top_p,
    repetition_penalty, stop_strings and seed, and optionally min_new_tokens and cache_implementation (the
    benchmark's), no_repeat_ngram_size (0: off) and num_beams (1: greedy or sampling; more: beam search, of
    which the best beam comes back). `sort_by_length=False` batches the prompts in their order (the former path, for the
    benchmark's comparison)."""
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    torch.manual_seed(settings["seed"])
    sampling = {"temperature": settings["temperature"], "top_p": settings["top_p"]} if settings["do_sample"] else {}
    stops = list(settings["stop_strings"])
    may_end = stop_end_mask(tokenizer, stops).to(device) if stops else None
    lengths = prompt_lengths(tokenizer, prompts)
    order = longest_first(lengths) if sort_by_length else list(range(len(prompts)))
    # Beam search keeps num_beams rows of KV cache per prompt: the auto batch makes room for them.
    tokens_per_row = (max(lengths, default=0) + settings["max_new_tokens"]) * settings.get("num_beams", 1)
    batch_size = resolve_batch_size(batch_size, model, tokens_per_row)
    extra = {key: settings[key] for key in ("min_new_tokens", "cache_implementation") if settings.get(key)}
    # Passed only where not the default, so transformers' own defaults (and the benchmark's path) stay as they were.
    extra.update({key: settings[key] for key, off in DECODING_OFF.items() if settings.get(key, off) != off})
    if extra.get("cache_implementation") == "dynamic":
        del extra["cache_implementation"]  # transformers' default
    if extra.get("cache_implementation") == "static" and device.type == "cuda":
        use_compile_cache(device)  # transformers compiles the decoding step for the static cache
    new_ids: list[torch.Tensor | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        batch = tokenizer([prompts[i] for i in indices], return_tensors="pt", padding=True).to(device)
        prompt_length = batch["input_ids"].shape[1]
        criteria = StoppingCriteriaList([StopOnText(tokenizer, stops, prompt_length, may_end)] if stops else [])
        output = model.generate(
            **batch,
            max_new_tokens=settings["max_new_tokens"],
            do_sample=settings["do_sample"],
            repetition_penalty=settings["repetition_penalty"],
            stopping_criteria=criteria,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
            **extra,
        )
        for index, row in zip(indices, output[:, prompt_length:].cpu(), strict=True):
            new_ids[index] = row
    return new_ids


def generate_texts(model, tokenizer, prompts: list[str], settings: dict, batch_size="auto") -> list[str]:
    """Generate one continuation per prompt (see generate_new_ids), cut at the first stop string."""
    return generate_with_endings(model, tokenizer, prompts, settings, batch_size)[0]


def generate_with_endings(
    model, tokenizer, prompts: list[str], settings: dict, batch_size="auto"
) -> tuple[list[str], list[bool]]:
    """The continuations (cut at the first stop string) and, per prompt, whether the model ended it by itself
    (wrote a stop string or its end-of-sequence token) rather than running into max_new_tokens."""
    rows = generate_new_ids(model, tokenizer, prompts, settings, batch_size)
    if not rows:
        return [], []
    stops = list(settings["stop_strings"])
    raw = tokenizer.batch_decode([row.tolist() for row in rows], skip_special_tokens=True)
    ended = [ended_by_itself(row, text, tokenizer.eos_token_id, stops) for row, text in zip(rows, raw, strict=True)]
    return [cut_at_stop(text, stops) for text in raw], ended


def ended_by_itself(new_ids: torch.Tensor, text: str, eos_token_id: int | None, stop_strings: list[str]) -> bool:
    """Whether a generation stopped on its own: its text holds a stop string or its ids the end-of-sequence
    token (a row that stops early is padded with the pad id, which is often the eos id: either way it ended)."""
    if any(stop in text for stop in stop_strings):
        return True
    return eos_token_id is not None and bool((new_ids == eos_token_id).any())
