"""Label agreement of batchlane's int8 paths with PyTorch fp32 on the CFPB test split (speed is not measured).

    python bench/agreement.py                          # the bench model (MiniLM + linear probe, bench/model.py)
    python bench/agreement.py --model-dir DIR          # any classifier, e.g. the trained demo model
    python bench/agreement.py --test-docs 1000 --variants onnx-int8-static,onnx-int8-dynamic

Each variant loads the model with ``SequenceClassifier.load`` (the handler the server runs) and classifies the first
``--test-docs`` narratives of the test split; the table compares its labels with ``--runtime torch --precision
fp32`` and reports accuracy against the true product labels. Static int8 calibrates on the last 300 narratives of
the train split (``--calibration-data``), as ``bench/run.py`` does. Agreement does not depend on the machine's
load, so this runs on a shared machine; the results file records the load anyway.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus as corpus_mod  # noqa: E402
import model as model_mod  # noqa: E402

CACHE = HERE / ".cache"
RESULTS = HERE / "results"
CALIBRATION_TEXTS = 300
logger = logging.getLogger("bench")

# name -> (label, ClassifierOptions fields); "calibrated" variants get --calibration-data.
VARIANTS = {
    "torch-fp32": ("PyTorch fp32 (reference)", {"runtime": "torch", "precision": "fp32"}),
    "onnx-fp32": ("ONNX Runtime fp32", {"runtime": "onnx"}),
    "onnx-int8-static": ("ONNX Runtime static int8 (calibrated)", {"runtime": "onnx", "quantize": "int8"}),
    "onnx-int8-dynamic": ("ONNX Runtime dynamic int8", {"runtime": "onnx", "quantize": "int8"}),
    "openvino-int8": ("OpenVINO int8 (NNCF, calibrated)", {"runtime": "openvino", "quantize": "int8"}),
}
CALIBRATED = {"onnx-int8-static", "openvino-int8"}
DEFAULT = ["torch-fp32", "onnx-int8-static", "onnx-int8-dynamic"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, help="default: the bench model (built and cached)")
    parser.add_argument("--test-docs", type=int, default=3000, help="test narratives (default all 3000)")
    parser.add_argument("--variants", default=",".join(DEFAULT), help=f"from {','.join(VARIANTS)}")
    parser.add_argument("--name", help="results file suffix (default: the model folder's name)")
    parser.add_argument(
        "--threads", type=int, default=1, help="model threads (default 1: on a busy machine more only wait)"
    )
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = args.variants.split(",")
    if names[0] != "torch-fp32" or any(n not in VARIANTS for n in names):
        parser.error(f"--variants starts with torch-fp32 and names some of {','.join(VARIANTS)}")

    from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier

    data = corpus_mod.find_data()
    train, test = corpus_mod.read_split(data, "train"), corpus_mod.read_split(data, "test")[: args.test_docs]
    model_dir = args.model_dir or model_mod.build(CACHE, train)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = os.getloadavg()[0]
    texts, gold = [t for t, _ in test], [label for _, label in test]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-agreement-") as scratch:
        calibration = Path(scratch) / "calibration.jsonl"
        calibration.write_text("".join(json.dumps({"text": t}) + "\n" for t, _ in train[-CALIBRATION_TEXTS:]))
        reference: list[str] = []
        for name in names:
            label, fields = VARIANTS[name]
            options = ClassifierOptions(
                device="cpu",
                threads=args.threads,
                onnx_cache=CACHE / "onnx",
                openvino_cache=CACHE / "openvino",
                calibration_data=calibration if name in CALIBRATED else None,
                **fields,
            )
            began = time.perf_counter()
            classifier = SequenceClassifier.load(model_dir, options)
            loaded = time.perf_counter() - began
            labels = [r["label"] for r in classifier.classify(texts)]
            classifier.close()
            reference = reference or labels
            agree = sum(a == b for a, b in zip(labels, reference, strict=True)) / len(labels)
            accuracy = sum(a == b for a, b in zip(labels, gold, strict=True)) / len(labels)
            rows.append((label, agree, accuracy, loaded))
            logger.info("%s: labels = fp32 %.2f %%, accuracy %.2f %%", name, 100 * agree, 100 * accuracy)
    base = rows[0][2]
    lines = [
        f"# int8 label agreement: {model_dir.name}",
        "",
        f"Started {started}, 1-minute load average {load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at "
        f"the end (a shared machine: agreement does not depend on load; no speeds are reported). Model "
        f"`{model_dir}`; the first {len(texts)} CFPB test narratives; static int8 calibrated on the last "
        f"{CALIBRATION_TEXTS} train narratives. CPU: {_cpu()}.",
        "",
        "| variant | labels = PyTorch fp32 | accuracy | accuracy change | first load (s, incl. export) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, agree, accuracy, loaded in rows:
        lines.append(
            f"| {label} | {100 * agree:.2f} % | {100 * accuracy:.2f} % | {100 * (accuracy - base):+.2f} pts "
            f"| {loaded:.0f} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{time.strftime('%Y-%m-%d')}-agreement-{args.name or model_dir.name}.md"
        path.write_text(report)
        logger.info("written to %s", path)


def _cpu() -> str:
    from batchlane.serving import precision

    hardware = precision.detect()
    vnni = "" if hardware.avx512_vnni else " (no avx512_vnni: int8 runs on AVX2 kernels)"
    return hardware.describe() + vnni


if __name__ == "__main__":
    main()
