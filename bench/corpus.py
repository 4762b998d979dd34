"""The benchmark corpus: real CFPB complaint narratives cut to a seeded long-tailed length distribution.

Token lengths (with the two special tokens) are drawn from a log-normal with the requested median and 95th
percentile and capped at 512. Each document takes narratives in a seeded order, concatenating them when one is
too short and cutting the last one at a token boundary (its character offset), so every document is real English
text and the same seed always gives the same corpus.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import random
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA_DIRS = (ROOT / "examples" / "data" / "cfpb", ROOT.parent / "shared" / "data" / "cfpb-complaints")
Z95 = 1.6449


def find_data() -> Path:
    """The folder holding the CFPB ``train.csv.gz`` and ``test.csv.gz``."""
    for folder in DATA_DIRS:
        if (folder / "train.csv.gz").is_file() and (folder / "test.csv.gz").is_file():
            return folder
    raise SystemExit(f"CFPB data not found in any of {', '.join(map(str, DATA_DIRS))}")


def read_split(folder: Path, split: str) -> list[tuple[str, str]]:
    """``(text, label)`` rows of ``<split>.csv.gz``, in file order."""
    with gzip.open(folder / f"{split}.csv.gz", "rb") as raw:
        reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        return [(row["text"], row["label"]) for row in reader]


def build_corpus(
    narratives: Sequence[str],
    tokenizer: Any,
    count: int,
    *,
    seed: int = 0,
    median: int = 120,
    p95: int = 500,
    cap: int = 512,
) -> list[str]:
    """``count`` documents whose token lengths follow a log-normal (``median``, ``p95``) capped at ``cap``."""
    rng = random.Random(seed)
    order = list(range(len(narratives)))
    rng.shuffle(order)
    special = tokenizer.num_special_tokens_to_add()
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    sigma = math.log(p95 / median) / Z95
    docs: list[str] = []
    cursor = 0
    encoded: dict[int, list[tuple[int, int]]] = {}
    for _ in range(count):
        target = min(cap, max(special + 4, round(math.exp(rng.gauss(math.log(median), sigma)))))
        need = target - special
        parts: list[str] = []
        while need > 0:
            index = order[cursor % len(order)]
            cursor += 1
            if index not in encoded:
                encoded[index] = backend.encode(narratives[index], add_special_tokens=False).offsets
            offsets = encoded[index]
            if not offsets:
                continue
            if len(offsets) <= need:
                parts.append(narratives[index].strip())
                need -= len(offsets)
            else:
                parts.append(narratives[index][: offsets[need - 1][1]].strip())
                need = 0
        docs.append(" ".join(parts))
    return docs


def token_lengths(texts: Sequence[str], tokenizer: Any, max_length: int = 512) -> list[int]:
    """Token counts with special tokens, truncated to ``max_length`` (what the model sees)."""
    return [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]


def describe_lengths(lengths: Sequence[int]) -> dict[str, float]:
    ordered = sorted(lengths)
    n = len(ordered)
    return {
        "docs": n,
        "mean": round(statistics.fmean(ordered), 1),
        "median": ordered[n // 2],
        "p95": ordered[min(n - 1, int(0.95 * n))],
        "max": ordered[-1],
        "tokens": sum(ordered),
    }
