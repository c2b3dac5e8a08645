"""The held-out titles that get generated and scored, and how much of their reference text train has seen.

- A seeded random sample of the test split, not its first rows (file order groups similar products): each
  row gets a hash of (sample seed, title, description) and the rows with the smallest hashes are taken, in
  hash order. The sample depends only on the data and the seed, not on the model, the variant or the row
  order, and a smaller sample is the start of a larger one (generate's titles are the first of metrics').
- Contamination: how many scored references appear word for word (normalized) in the train split, and the
  share of each reference's word 8-grams found in train descriptions. Only the references' own 8-grams are
  held in memory; train is read line by line.
"""

from __future__ import annotations

import hashlib
import heapq
import json

from ftpipe.grouping import normalized_text

NGRAM = 8  # eight words in a row rarely repeat by chance; a copied description shares most of its 8-grams
MIN_SOUND_TITLES = 30  # below this a bootstrap interval over titles is too wide and unstable to compare runs
OVERLAP_WARNING = 20.0  # percent of 8-grams: beyond boilerplate ("machine wash cold ...") the set is leaking


def sample_key(row: dict, seed: int) -> bytes:
    return hashlib.blake2b(f"eval-{seed}\x00{row['title']}\x00{row['content']}".encode(), digest_size=8).digest()


def sample_rows(path: str, count: int | None, seed: int) -> list[dict]:
    """`count` rows (all when None) of a JSON Lines split, drawn by a seeded hash, in hash order."""
    if count == 0:
        return []
    heap: list[tuple] = []  # (negated key, line, row): the `count` smallest keys so far
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if not line.strip():
                continue
            row = json.loads(line)
            item = (_negated(sample_key(row, seed)), number, row)
            if count is None or len(heap) < count:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
    return [row for _, _, row in sorted(heap, key=lambda item: item[:2], reverse=True)]


def _negated(key: bytes) -> int:
    return -int.from_bytes(key, "big")


def sample_summary(rows: list[dict], seed: int) -> dict:
    """What identifies a sample: two runs with the same titles_sha256 scored the same titles in the same order."""
    pairs = json.dumps([[row["title"], row["content"]] for row in rows], ensure_ascii=False)
    return {"seed": seed, "n": len(rows), "titles_sha256": hashlib.sha256(pairs.encode()).hexdigest()}


def word_ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    words = normalized_text(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def contamination(references: list[str], train_path: str | None, seed: int) -> dict:
    """Exact matches of the references in train (normalized description equality) and the percent of
    each reference's word 8-grams present in train, with a bootstrap interval; `warning` is False or why."""
    if train_path is None:
        return {
            "exact_matches": None,
            "n": len(references),
            "ngram_overlap": None,
            "warning": "not measured: no train split given",
        }
    from ftpipe.scoring import bootstrap_mean  # imports torch: prepare imports this module for NGRAM alone

    wanted = [word_ngrams(reference) for reference in references]
    exact, found = _seen_in_train(train_path, {normalized_text(r) for r in references}, set().union(*wanted))
    matches = sum(normalized_text(reference) in exact for reference in references)
    shares = [100 * len(grams & found) / len(grams) for grams in wanted if grams]
    overlap = {**bootstrap_mean(shares, seed), "unit": "percent", "ngram": NGRAM} if shares else None
    return {
        "exact_matches": matches,
        "n": len(references),
        "ngram_overlap": overlap,
        "warning": _contamination_warning(matches, len(references), overlap),
    }


def _seen_in_train(train_path: str, descriptions: set[str], ngrams: set[tuple]) -> tuple[set, set]:
    """Which of `descriptions` (normalized) and which of `ngrams` occur in the train split's descriptions."""
    starts = {gram[0] for gram in ngrams}  # most positions of a train text start no wanted 8-gram
    exact, found = set(), set()
    with open(train_path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            text = normalized_text(json.loads(line)["content"])
            if text in descriptions:
                exact.add(text)
            words = text.split()
            for i in range(len(words) - NGRAM + 1):
                if words[i] in starts and (gram := tuple(words[i : i + NGRAM])) in ngrams:
                    found.add(gram)
    return exact, found


def _contamination_warning(matches: int, n: int, overlap: dict | None):
    problems = []
    if matches:
        problems.append(f"{matches} of {n} scored references appear word for word in the train split")
    if overlap is None:
        problems.append(f"no scored reference has {NGRAM} words: 8-gram overlap not measured")
    elif overlap["mean"] >= OVERLAP_WARNING:
        problems.append(f"{overlap['mean']:.1f}% of the references' word {NGRAM}-grams occur in train")
    return "; ".join(problems) if problems else False
