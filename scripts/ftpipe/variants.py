"""The evaluation's variants: the base model with the seed notebook's plain prompt (`base_plain`), the base
model with the tagged training prompt (`base_tagged`) and the adapter merged into the base (`adapter`).

Shared by the base_eval stage, which runs the two base variants once per base model, data and prompt (they
do not depend on the adapter), and the metrics stage, which runs the adapter and scores all three: both
prompt, decode and measure perplexity the same way. Likewise for the sampled descriptions: the base_samples
stage samples the base variants once per key, the generate stage the adapter, with the same settings.
"""

from __future__ import annotations

from ftpipe.generation import AUTO_BATCH_CPU, generate_with_endings
from ftpipe.heldout import sample_rows
from ftpipe.scoring import description_nll, distinct_2, length_ratio, start_reference_scores, title_coverage
from ftpipe.timing import Stopwatch

VARIANTS = ("base_plain", "base_tagged", "adapter")
BASE_VARIANTS = ("base_plain", "base_tagged")
PER_TITLE = (
    "rouge_l",
    "rouge_l_precision",
    "rouge_l_recall",
    "chrf",
    "chrf_beta1",
    "title_coverage",
    "distinct_2",
    "length_ratio",
)
# Scoring keeps the logits of every position (rows x length x vocabulary): far fewer rows than generation.
NLL_BATCH = 32


def sampled_tests(args, stage: str) -> list[dict]:
    """The test rows of a generating stage: a seeded sample, the same for every variant, run and stage on the
    same data (generate's are the first of metrics')."""
    tests = sample_rows(args.test, args.num_titles, args.sample_seed)
    if not tests:
        raise SystemExit(f"{stage}: {args.test} has no rows: the test split is empty (too few rows or groups)")
    return tests


def sampled_rows(args, stage: str) -> tuple[list[dict], list[dict]]:
    """The scored test rows and the validation rows for perplexity: seeded samples, the same for every
    variant, run and stage on the same data."""
    tests = sampled_tests(args, stage)
    return tests, sample_rows(args.validation, args.perplexity_rows, args.sample_seed)


def add_heldout_args(parser, train_help: str | None = None) -> None:
    """The splits the evaluation stages read: the sampled test titles, the validation rows for perplexity
    and, where `train_help` says what for, the train split."""
    parser.add_argument("--test", required=True, help="prepared test split (JSON Lines)")
    parser.add_argument("--validation", required=True, help="prepared validation split (JSON Lines), for perplexity")
    if train_help:
        parser.add_argument("--train", default=None, help=f"prepared train split (JSON Lines), {train_help}")


def decoding_settings(args, budget: int) -> dict:
    """The generation settings of every variant (stop_strings as configured; resolved with the tokenizer)."""
    return {
        "max_new_tokens": budget,
        "do_sample": False,
        "temperature": 1.0,
        "top_p": 1.0,
        "repetition_penalty": args.repetition_penalty,
        "no_repeat_ngram_size": args.no_repeat_ngram_size,
        "num_beams": args.num_beams,
        "stop_strings": args.stop_strings,
        "seed": args.seed,
        "cache_implementation": args.cache,
    }


def sampling_settings(args, stop_strings: list[str]) -> dict:
    """The sampled descriptions' settings of every variant (generate's section; the seed notebook's sampling),
    `stop_strings` as resolved with the tokenizer."""
    sampling = {
        key: getattr(args, key) for key in ("max_new_tokens", "do_sample", "temperature", "top_p", "repetition_penalty")
    }
    return {**sampling, "stop_strings": stop_strings, "seed": args.seed, "cache_implementation": args.cache}


def refuse_other_settings(stage: str, path: str, there: dict, here: dict, what: str) -> None:
    """A stage that takes the base variants from `path` generates the adapter as they were generated, or the
    variants would compare two settings: it stops, naming the settings that differ."""
    differ = sorted(key for key in set(there) | set(here) if there.get(key) != here.get(key))
    if differ:
        raise SystemExit(
            f"{stage}: {path} was generated with other {what} than these ({', '.join(differ)}): "
            f"{ {key: there.get(key) for key in differ} } there, { {key: here.get(key) for key in differ} } here"
        )


def refuse_other_rows(stage: str, path: str, name: str, there: dict, here: dict, makes: str) -> None:
    """A stage that takes the base variants from `path` pairs them with its own rows: it stops where they were
    made for other rows (their sample summaries differ), saying what to rerun (`makes`)."""
    if there != here:
        raise SystemExit(
            f"{stage}: {path} holds the base variants of other {name.replace('_', ' ')} rows than these "
            f"({there} there, {here} here): {makes}"
        )


def variant_prompts(base_prompt_template: str, prompt_format, titles: list[str]) -> dict[str, list[str]]:
    plain = [base_prompt_template.format(title=title) for title in titles]
    tagged = [prompt_format.prompt(title) for title in titles]
    return {"base_plain": plain, "base_tagged": tagged, "adapter": tagged}


def variant_responses(prompt_format, validation: list[dict]) -> dict[str, list[str]]:
    """The validation descriptions as each variant's prompt expects them (perplexity)."""
    tagged = [prompt_format.response(row["content"]) for row in validation]
    return {"base_plain": [row["content"] for row in validation], "base_tagged": tagged, "adapter": tagged}


def scoring_batch(batch_size, device) -> int:
    """Rows per perplexity batch: the configured batch size, at most NLL_BATCH; `auto` is NLL_BATCH on a GPU."""
    if batch_size in (None, "auto"):
        return NLL_BATCH if device.type == "cuda" else AUTO_BATCH_CPU
    return min(int(batch_size), NLL_BATCH)


class VariantRunner:
    """Runs variants of one loaded model on the sampled rows: greedy generations of the test titles (with
    whether each ended by itself), their per-title scores and (nll, tokens) of the validation descriptions.
    The scores are computed on `threads` CPU processes while the GPU scores perplexity."""

    def __init__(self, args, tokenizer, prompt_format, tests, validation, decoding, device, clock: Stopwatch, threads):
        self.tokenizer, self.decoding, self.clock, self.batch_size = tokenizer, decoding, clock, args.batch_size
        self.tests, self.threads = tests, threads
        self.nll_batch = scoring_batch(args.batch_size, device)
        self.test_prompts = variant_prompts(args.base_prompt_template, prompt_format, [row["title"] for row in tests])
        self.val_prompts = variant_prompts(
            args.base_prompt_template, prompt_format, [row["title"] for row in validation]
        )
        self.val_responses = variant_responses(prompt_format, validation)

    def run(self, model, variant: str) -> tuple[list[str], list[bool], list[tuple], dict]:
        """(generations, ended, nll, per-title scores) of one variant."""
        with self.clock.part(f"generate_{variant}"):
            generations, ended = generate_with_endings(
                model, self.tokenizer, self.test_prompts[variant], self.decoding, self.batch_size
            )
        scores = start_per_title_scores({variant: generations}, self.tests, self.threads)
        with self.clock.part(f"perplexity_{variant}"):
            nll = description_nll(
                model, self.tokenizer, self.val_prompts[variant], self.val_responses[variant], self.nll_batch
            )
        with self.clock.part(f"scoring_{variant}"):  # what is left of it once perplexity is done
            return generations, ended, nll, scores()[variant]


def start_per_title_scores(generations: dict[str, list[str]], tests: list[dict], processes: int):
    """Every per-title measure (PER_TITLE) of each variant's generations, in the order of `tests`, started now:
    returns a function that waits for them. The reference-based ones of all the variants given are computed in
    one pass over `processes` processes (start_reference_scores)."""
    references, titles = [row["content"] for row in tests], [row["title"] for row in tests]
    predictions = [text for texts in generations.values() for text in texts]
    against = start_reference_scores(predictions, references * len(generations), processes)

    def result() -> dict[str, dict]:
        scores, reference_based = {}, against()
        for index, (variant, texts) in enumerate(generations.items()):
            part = slice(index * len(tests), (index + 1) * len(tests))
            scores[variant] = {
                **{name: values[part] for name, values in reference_based.items()},
                "title_coverage": title_coverage(texts, titles),
                "distinct_2": distinct_2(texts),
                "length_ratio": length_ratio(texts, references),
            }
        return scores

    return result
