"""Memory check: peak RSS of ``batchlane transform`` is bounded by payload and batch sizes, not by the input size.

A large and a 10× smaller JSON Lines file of real CFPB narratives stream through a transform job (local engine,
MultiRecord, 6 MB payloads) against ``batchlane serve``; the runner and the server each report their peak RSS
(``VmHWM``), and the large input's peaks must stay within 20 % of the small one's. The model is a tiny BERT
classifier truncating at 32 tokens: the check is about streaming, so the model only has to be cheap.

    python bench/run.py --memory            # 1 GB vs 100 MB
    python bench/run.py --memory --quick    # 200 MB vs 20 MB
    python bench/memory.py --sizes 400,40   # any pair, in MB
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus as corpus_mod  # noqa: E402
import variants as variants_mod  # noqa: E402

logger = logging.getLogger("bench")
MB = 1024 * 1024
TOLERANCE = 0.20


def write_input(path: Path, size_mb: int, narratives: list[str]) -> int:
    """A JSON Lines file of about ``size_mb`` MiB cycling through ``narratives``; returns the record count."""
    target, written, records = size_mb * MB, 0, 0
    lines = [(json.dumps({"text": t}) + "\n").encode() for t in narratives]
    with path.open("wb") as handle:
        while written < target:
            for line in lines:
                handle.write(line)
                written += len(line)
                records += 1
                if written >= target:
                    break
    return records


def measure_one(model_dir: str, folder: Path) -> dict[str, float]:
    """Run one job over ``folder/in`` (in this process: it is the runner) and report both peaks."""
    env = {"BATCHLANE_MAX_LENGTH": "32", "BATCHLANE_DEVICE": "cpu"}
    server = variants_mod.Server(model_dir, env)
    try:
        record, seconds = variants_mod.run_transform_job(server.url, folder / "in", folder / "out", folder)
        server_rss = server.peak_rss_mb()
    finally:
        server.stop()
    if record.status.value != "Completed":
        raise SystemExit(f"job ended {record.status.value}: {record.failure_reason}")
    return {
        "seconds": seconds,
        "records": record.records_done,
        "runner_rss_mb": variants_mod.peak_rss_mb(),
        "server_rss_mb": server_rss or float("nan"),
    }


def main(quick: bool = False, sizes: tuple[int, int] | None = None) -> None:
    large, small = sizes or ((200, 20) if quick else (1024, 100))
    from batchlane.examples.tiny_models import build_tiny_classifier

    narratives = [t for t, _ in corpus_mod.read_split(corpus_mod.find_data(), "train")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch:
        work = Path(scratch)
        model_dir = build_tiny_classifier(work / "model", arch="bert", hidden_size=32, layers=2)
        for size in (small, large):
            folder = work / f"{size}mb"
            (folder / "in").mkdir(parents=True)
            records = write_input(folder / "in" / "data.jsonl", size, narratives)
            logger.info("%d MB input (%d records); load %.2f", size, records, os.getloadavg()[0])
            load = os.getloadavg()[0]
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(folder), "--model-dir", str(model_dir)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise SystemExit(f"memory run for {size} MB failed:\n{done.stderr[-4000:]}")
            results[size] = json.loads((folder / "result.json").read_text()) | {"load": round(load, 2)}
            (folder / "in" / "data.jsonl").unlink()
            logger.info("%d MB: %s", size, results[size])
    report = render(results, small, large)
    print(report)
    import run

    info = run.machine()
    path = run.RESULTS / f"{time.strftime('%Y-%m-%d')}-{run.machine_slug(info)}-memory.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        f"# Memory check on {info['describe']}\n\nCommand: `python bench/run.py --memory"
        f"{' --quick' if quick else ''}`\n\n{report}"
    )
    logger.info("written to %s", path)


def render(results: dict[int, dict[str, float]], small: int, large: int) -> str:
    lines = [
        f"Memory check ({time.strftime('%Y-%m-%d %H:%M')}): JSON Lines input through `batchlane transform` "
        "(MultiRecord, 6 MB payloads, tiny BERT at 32 tokens).",
        "",
        "| input | records | seconds | runner peak RSS (MB) | server peak RSS (MB) | load |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for size in (small, large):
        r = results[size]
        lines.append(
            f"| {size} MB | {r['records']:,} | {r['seconds']:.0f} | {r['runner_rss_mb']:.0f} | "
            f"{r['server_rss_mb']:.0f} | {r['load']} |"
        )
    verdicts = []
    for key, name in (("runner_rss_mb", "runner"), ("server_rss_mb", "server")):
        ratio = results[large][key] / results[small][key]
        verdicts.append(f"{name} {ratio:.2f}× ({'within' if ratio <= 1 + TOLERANCE else 'NOT within'} 20 %)")
    lines += ["", f"Peak RSS of the {large} MB input relative to the {small} MB one: {', '.join(verdicts)}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", help="LARGE,SMALL in MB")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.one:
        (args.one / "result.json").write_text(json.dumps(measure_one(args.model_dir, args.one)))
    else:
        pair = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else None
        main(quick=args.quick, sizes=pair)  # type: ignore[arg-type]
