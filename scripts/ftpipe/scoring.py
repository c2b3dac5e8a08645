"""Text-generation quality: ROUGE-L and chrF per example, bootstrap confidence intervals, the per-token
negative log-likelihood of reference descriptions (for perplexity), and three cheap signals that fit
product descriptions: title coverage, repetition (distinct bigrams) and length against the reference."""

import math
import re

import torch

_NON_WORD = re.compile(r"[\W_]+")
# Words that carry no product information, English and Portuguese (titles are English, prompts Portuguese).
STOPWORDS = frozenset(
    "a an and the of for to in on with by from at or as is are be this that it its your you our "
    "o os as um uma uns umas e de do da dos das para com por em no na nos nas ou que se seu sua".split()
)


def rouge_l(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """ROUGE-L (with stemming) per example, 0..100: `f` (F1), `precision` (share of the description's words
    on the longest common subsequence) and `recall` (share of the reference's): a description that runs on
    past the reference loses precision, one cut short loses recall."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred)["rougeL"] for pred, ref in zip(predictions, references, strict=True)]
    return {
        "f": [100 * score.fmeasure for score in scores],
        "precision": [100 * score.precision for score in scores],
        "recall": [100 * score.recall for score in scores],
    }


def chrf(predictions: list[str], references: list[str], beta: int = 2) -> list[float]:
    """chrF per example, 0..100. beta=2 (sacrebleu's default, the usual chrF) weighs recall twice as much as
    precision, which favours descriptions longer than the reference; beta=1 weighs them equally."""
    import sacrebleu

    return [
        sacrebleu.sentence_chrf(pred, [ref], beta=beta).score for pred, ref in zip(predictions, references, strict=True)
    ]


def reference_scores(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """ROUGE-L F1, precision and recall, chrF (beta 2) and chrF beta 1 per example."""
    rouge = rouge_l(predictions, references)
    return {
        "rouge_l": rouge["f"],
        "rouge_l_precision": rouge["precision"],
        "rouge_l_recall": rouge["recall"],
        "chrf": chrf(predictions, references),
        "chrf_beta1": chrf(predictions, references, beta=1),
    }


PAIRS_PER_PROCESS = 200  # below this a process costs more to start than it saves (about 15 ms a pair)


def start_reference_scores(predictions: list[str], references: list[str], processes: int):
    """reference_scores over `processes` forked processes (the scorers are pure Python: one core each), in
    contiguous chunks so the results come back in order, started now: returns a function that waits for the
    scores, so the caller can use the GPU meanwhile. The workers are forked here, all at once, in the calling
    thread (a fork context pool starts its processes before its own helper thread). Small inputs are scored in
    one process, here and now."""
    chunks = max(1, min(processes, len(predictions) // PAIRS_PER_PROCESS))
    if chunks == 1:
        scores = reference_scores(predictions, references)
        return lambda: scores
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    bounds = [len(predictions) * i // chunks for i in range(chunks + 1)]
    pool = ProcessPoolExecutor(chunks, mp_context=multiprocessing.get_context("fork"))
    spans = zip(bounds, bounds[1:], strict=False)
    futures = [pool.submit(reference_scores, predictions[a:b], references[a:b]) for a, b in spans]

    def result() -> dict:
        try:
            parts = [future.result() for future in futures]
        finally:
            pool.shutdown(cancel_futures=True)
        return {name: [value for part in parts for value in part[name]] for name in parts[0]}

    return result


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped (the same words for a title and for its description)."""
    return _NON_WORD.sub(" ", text.casefold()).split()


def title_coverage(predictions: list[str], titles: list[str]) -> list[float]:
    """Percent of each title's content words (stopwords left out; all words if only stopwords) that the
    description contains: a description of another product scores low whatever its fluency."""
    scores = []
    for prediction, title in zip(predictions, titles, strict=True):
        title_words = set(words(title))
        content = (title_words - STOPWORDS) or title_words
        scores.append(100 * len(content & set(words(prediction))) / len(content) if content else 100.0)
    return scores


def distinct_2(predictions: list[str]) -> list[float]:
    """Percent of each description's word bigrams that are distinct: 100 = no bigram repeats, low = the
    model loops. A description under two words has no bigram to repeat and scores 100 (length_ratio shows
    that it is short)."""
    scores = []
    for prediction in predictions:
        tokens = words(prediction)
        bigrams = list(zip(tokens, tokens[1:], strict=False))
        scores.append(100 * len(set(bigrams)) / len(bigrams) if bigrams else 100.0)
    return scores


def length_ratio(predictions: list[str], references: list[str]) -> list[float]:
    """Words of each description over words of its reference: 1 = as long as the reference."""
    return [
        len(words(prediction)) / max(1, len(words(reference)))
        for prediction, reference in zip(predictions, references, strict=True)
    ]


def bootstrap_mean(values: list[float], seed: int, samples: int = 1000, level: float = 0.95) -> dict:
    """Mean with a percentile bootstrap interval over examples (all resamples drawn at once: a thousand
    titles take milliseconds, where a Python loop took most of a second per measure)."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    n = len(data)
    draws = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    means = np.sort(data[draws].mean(axis=1))
    tail = (1 - level) / 2
    return {
        "mean": round(float(data.mean()), 3),
        "low": round(float(means[int(tail * samples)]), 3),
        "high": round(float(means[min(samples - 1, int((1 - tail) * samples))]), 3),
        "n": n,
    }


def paired_difference(first: list[float], second: list[float], seed: int) -> dict:
    """Bootstrap interval of mean(second - first) over the same examples."""
    return bootstrap_mean([b - a for a, b in zip(first, second, strict=True)], seed)


@torch.no_grad()
def description_nll(model, tokenizer, prompts: list[str], responses: list[str], batch_size: int = 8) -> list[tuple]:
    """(summed negative log-likelihood, token count) of each response given its prompt."""
    device = next(model.parameters()).device
    tokenizer.padding_side = "right"
    results = []
    for start in range(0, len(prompts), batch_size):
        batch_prompts, batch_responses = prompts[start : start + batch_size], responses[start : start + batch_size]
        texts = [p + r for p, r in zip(batch_prompts, batch_responses, strict=True)]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, return_offsets_mapping=True)
        offsets = encoded.pop("offset_mapping")
        labels = encoded["input_ids"].clone()
        for row, prompt in enumerate(batch_prompts):
            in_prompt = offsets[row, :, 0] < len(prompt)  # tokens starting inside the prompt carry no loss
            labels[row, in_prompt | (encoded["attention_mask"][row] == 0)] = -100
        encoded = {key: value.to(device) for key, value in encoded.items()}
        logits = model(**encoded, use_cache=False).logits
        # Only the response's positions, in float32: the prompt's and the padding's logits (most of a batch's
        # rows x length x vocabulary) are never converted, and the loss reads contiguous rows.
        targets = labels[:, 1:].to(device)
        scored = targets != -100
        losses = torch.nn.functional.cross_entropy(logits[:, :-1][scored].float(), targets[scored], reduction="none")
        rows = torch.arange(len(texts), device=device).unsqueeze(1).expand_as(scored)[scored]
        sums = torch.zeros(len(texts), device=device, dtype=losses.dtype).index_add_(0, rows, losses)
        results.extend(zip(sums.tolist(), scored.sum(dim=1).tolist(), strict=True))
    return results


def perplexity(nll_counts: list[tuple]) -> float:
    total, count = sum(n for n, _ in nll_counts), sum(c for _, c in nll_counts)
    return math.exp(total / count) if count else float("nan")
