"""The cost of data capture on ``batchlane serve`` throughput: the same load with and without ``--capture``.

Two servers run side by side for each model, one capturing every request to a temp folder (``--capture DIR``,
100 % sampling) and one not. A closed loop of ``--clients`` concurrent clients sends single-record JSON requests;
the servers take turns, one round each, in alternating order (ABBA...), so a change in the machine's load hits both
alike. The report gives each server's median requests/s over the rounds, their ratio, the load average around each
round and the capture's own counts (records written and dropped, from ``/metrics``).

Two models: all-MiniLM-L6-v2 with a classification head (the benchmark model, as in ``bench/realtime.py``), and a
tiny random BERT whose forward pass costs almost nothing, the worst case for capture's share of the work.

    python bench/capture_overhead.py                  # both models, 8 clients, 6 rounds of 200 requests
    python bench/capture_overhead.py --model tiny --rounds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import realtime as realtime_mod  # noqa: E402
import run as run_mod  # noqa: E402
import variants as variants_mod  # noqa: E402

logger = logging.getLogger("bench")

SAMPLE_TEXTS = (
    "I was charged twice for the same purchase and the bank refuses to refund the second charge.",
    "Someone opened a credit card in my name and the bureau will not remove it from my report.",
    "The servicer lost my mortgage payment and now reports me as late.",
    "Thanks so much for driving me home last night.",
)


def texts_for(model: str, count: int, seed: int) -> tuple[Path, list[str]]:
    """The model folder to serve and ``count`` request texts for it."""
    cache = HERE / ".cache"
    if model == "tiny":
        from batchlane.examples.tiny_models import build_tiny_classifier

        folder = build_tiny_classifier(cache / "tiny-bert-capture", seed=seed)
        return folder, [SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)] for i in range(count)]
    import corpus as corpus_mod
    import model as model_mod
    from transformers import AutoTokenizer

    try:
        train = corpus_mod.read_split(corpus_mod.find_data(), "train")
    except SystemExit:
        train = [(t, str(i % 2)) for i, t in enumerate(SAMPLE_TEXTS)]
    folder = model_mod.build(
        cache, train, seed=seed, random_head=True
    )  # the head's weights do not change speed
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if len(train) > len(SAMPLE_TEXTS):
        return folder, corpus_mod.build_corpus([t for t, _ in train], tokenizer, count, seed=seed + 1)
    return folder, [SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)] for i in range(count)]


def capture_counts(url: str) -> tuple[float, float]:
    """(records written, records dropped) from the server's ``/metrics``."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    written = dropped = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "batchlane_capture_records_total":
                written += sample.value
            elif sample.name == "batchlane_capture_dropped_records_total":
                dropped += sample.value
    return written, dropped


def measure(model: str, clients: int, requests: int, rounds: int, seed: int) -> dict[str, Any]:
    folder, texts = texts_for(model, requests, seed)
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as scratch:
        plain = variants_mod.Server(str(folder), {})
        captured = variants_mod.Server(str(folder), {}, ["--capture", scratch, "--capture-name", "bench"])
        servers = {"off": plain, "on": captured}
        rps: dict[str, list[float]] = {"off": [], "on": []}
        loads: list[float] = []
        try:
            for server in servers.values():  # warm-up: first requests pay for lazy initialisation
                asyncio.run(realtime_mod.drive(server.url, texts, clients, 2 * clients))
            for round_index in range(rounds):
                order = ("off", "on") if round_index % 2 == 0 else ("on", "off")
                for key in order:
                    loads.append(os.getloadavg()[0])
                    seconds, _ = asyncio.run(realtime_mod.drive(servers[key].url, texts, clients, requests))
                    rps[key].append(requests / seconds)
                logger.info(
                    "%s round %d: off %.1f/s, on %.1f/s",
                    model,
                    round_index + 1,
                    rps["off"][-1],
                    rps["on"][-1],
                )
            written, dropped = capture_counts(captured.url)
        finally:
            plain.stop()
            captured.stop()
        files = list(Path(scratch).rglob("*.jsonl"))
        on_disk = sum(len(f.read_text().splitlines()) for f in files)
    off, on = statistics.median(rps["off"]), statistics.median(rps["on"])
    return {
        "model": model,
        "off": off,
        "on": on,
        "ratio": on / off,
        "rounds_off": rps["off"],
        "rounds_on": rps["on"],
        "load_min": min(loads),
        "load_max": max(loads),
        "written": written,
        "dropped": dropped,
        "on_disk": on_disk,
        "expected": (rounds * requests) + 2 * clients,
    }


def render(rows: list[dict[str, Any]], clients: int, requests: int, rounds: int, uptime: str) -> str:
    lines = [
        f"Data capture overhead ({time.strftime('%Y-%m-%d %H:%M')}): {clients} concurrent clients on loopback, "
        f"{rounds} alternating rounds of {requests} single-record JSON requests per server; medians over rounds.",
        "",
        f"Machine load before the run (`uptime`): `{uptime}`. The machine is shared with other work; the rounds "
        "alternate so both servers see the same load.",
        "",
        "| model | without capture (req/s) | with capture (req/s) | ratio | overhead | load avg (min-max) | "
        "captured / dropped |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['off']:.1f} | {r['on']:.1f} | {r['ratio']:.3f} | {100 * (1 - r['ratio']):+.1f} % "
            f"| {r['load_min']:.2f}-{r['load_max']:.2f} | {int(r['written'])} / {int(r['dropped'])} |"
        )
    lines += ["", "Per round (requests/s, without → with capture):", ""]
    for r in rows:
        pairs = ", ".join(f"{a:.1f}→{b:.1f}" for a, b in zip(r["rounds_off"], r["rounds_on"], strict=True))
        lines.append(f"- {r['model']}: {pairs}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["minilm", "tiny", "both"], default="both")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests per round and server")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    models = ["tiny", "minilm"] if args.model == "both" else [args.model]
    rows = [measure(m, args.clients, args.requests, args.rounds, args.seed) for m in models]
    report = render(rows, args.clients, args.requests, args.rounds, uptime)
    print(report)
    path = run_mod.write_results_file(
        report, name="capture-overhead", title="Data capture overhead", script="bench/capture_overhead.py"
    )
    logger.info("written to %s", path)
    print(json.dumps([{k: v for k, v in r.items() if not k.startswith("rounds")} for r in rows]))


if __name__ == "__main__":
    main()
