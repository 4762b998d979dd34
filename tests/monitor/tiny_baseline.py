"""A monitoring baseline built by the real ``batchlane monitor baseline`` from the tiny BERT classifier
(``tiny_bert_dir`` in tests/conftest.py), and texts the tiny model scores clearly in or out of it.

The tiny model's weights are random but seeded, so its scores are fixed: every text of ``TEXTS`` scores at least
0.91 against the baseline and ``SHIFTED`` about 0.85 (tests/integration/monitor/test_run.py checks this), so a
run with ``--threshold THRESHOLD`` flags ``SHIFTED`` and nothing of ``TEXTS``, deterministically.
"""

from __future__ import annotations

from pathlib import Path

from batchlane.cli.main import main

WORDS = [
    "billing",
    "fraud",
    "service",
    "card",
    "account",
    "payment",
    "refund",
    "charge",
    "statement",
    "loan",
    "mortgage",
    "bank",
]
# The baseline's training data: 60 finance-word texts of 3 to 11 words.
TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + i % 9)) for i in range(60)]
SHIFTED = "The flowers in the front yard are finally blooming."
# Between SHIFTED's score and the lowest score of TEXTS, with a margin of 0.02 on each side.
THRESHOLD = 0.89
# The baseline's options: one layer and 32 tokens keep each run fast.
LAYERS, MAX_LENGTH, HELD_OUT = "-1", "32", "0.25"


def build_tiny_baseline(model_dir: Path, folder: Path) -> Path:
    """Run ``batchlane monitor baseline`` over ``TEXTS`` with ``model_dir``; returns the baseline folder
    (``folder``/baseline)."""
    train = folder / "train.txt"
    train.write_text("\n".join(TEXTS) + "\n")
    out = folder / "baseline"
    try:
        main(
            ["monitor", "baseline", "--model", str(model_dir), "--data", str(train), "--output", str(out),
             "--layers", LAYERS, "--max-length", MAX_LENGTH, "--held-out", HELD_OUT]
        )  # fmt: skip
    except SystemExit as exc:
        assert exc.code in (0, None), f"batchlane monitor baseline exited with {exc.code}"
    return out
