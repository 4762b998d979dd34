"""The cost of data capture on ``batchlane serve`` throughput: the same load with and without ``--capture``.

Two servers run side by side for each model, one capturing every request to a temp folder (``--capture DIR``,
100 % sampling) and one not. A closed loop of ``--clients`` concurrent clients sends single-record JSON requests;
the servers take turns, one round each, in alternating order (ABBA...), so a change in the machine's load hits both
alike. The report gives each server's median requests/s over the rounds, their ratio, the load average around each
round, each server's CPU time per request (user + system, from ``psutil``: far less sensitive to a busy machine than
wall-clock throughput) and the capture's own counts (records on disk, and dropped from ``/metrics``).

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
FLUSH_WAIT_S = 6.0  # longer than the capture writer's 5 s flush interval

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


def cpu_seconds(server: Any) -> float:
    """User + system CPU seconds the server process (and its threads) has used so far."""
    import psutil

    times = psutil.Process(server.process.pid).cpu_times()
    return times.user + times.system


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


def capture_path_cost(records: int = 5000) -> dict[str, float]:
    """Microseconds of CPU per record spent by capture itself, in this process: on the request thread (sampling,
    queueing) and on the writer thread (encoding, JSON, writing files), for a typical JSON request and answer."""
    from batchlane.serving.capture import CaptureConfig, CaptureWriter

    body = json.dumps({"inputs": SAMPLE_TEXTS[0]}).encode()
    answer = b'[{"label": "Credit reporting", "score": 0.91}]'
    with tempfile.TemporaryDirectory(prefix="bench-capture-path-") as scratch:
        writer = CaptureWriter(CaptureConfig(scratch, "bench"))
        started = time.thread_time()
        for _ in range(records):
            writer.capture(body, "application/json", answer, "application/json")
        request_side = time.thread_time() - started
        started = time.process_time()
        writer.close()  # the writer thread encodes and writes everything that was queued
        writer_side = time.process_time() - started
    return {"request_us": 1e6 * request_side / records, "writer_us": 1e6 * writer_side / records}


def measure(model: str, clients: int, requests: int, rounds: int, seed: int, threads: int) -> dict[str, Any]:
    folder, texts = texts_for(model, requests, seed)
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as scratch:
        # One model thread each: on a shared, oversubscribed machine OpenMP's spinning threads would dominate.
        common = ["--threads", str(threads)]
        plain = variants_mod.Server(str(folder), {}, common)
        captured = variants_mod.Server(
            str(folder), {}, [*common, "--capture", scratch, "--capture-name", "bench"]
        )
        servers = {"off": plain, "on": captured}
        rps: dict[str, list[float]] = {"off": [], "on": []}
        loads: list[float] = []
        try:
            for server in servers.values():  # warm-up: first requests pay for lazy initialisation
                asyncio.run(realtime_mod.drive(server.url, texts, clients, 2 * clients))
            cpu_start = {key: cpu_seconds(server) for key, server in servers.items()}
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
            time.sleep(FLUSH_WAIT_S)  # the capture writer's last flush belongs to the measured work
            cpu = {key: cpu_seconds(server) - cpu_start[key] for key, server in servers.items()}
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
        "cpu_ms_off": 1000 * cpu["off"] / (rounds * requests),
        "cpu_ms_on": 1000 * cpu["on"] / (rounds * requests),
        "load_min": min(loads),
        "load_max": max(loads),
        "written": written,
        "dropped": dropped,
        "on_disk": on_disk,
        "expected": (rounds * requests) + 2 * clients,
    }


def render(
    rows: list[dict[str, Any]],
    clients: int,
    requests: int,
    rounds: int,
    threads: int,
    uptime: str,
    path_cost: dict[str, float],
) -> str:
    lines = [
        f"Data capture overhead ({time.strftime('%Y-%m-%d %H:%M')}): {clients} concurrent clients on loopback, "
        f"{rounds} alternating rounds of {requests} single-record JSON requests per server; medians over rounds. "
        f"Both servers run with `--threads {threads}`.",
        "",
        f"Machine load before the run (`uptime`): `{uptime}`. The machine is shared with other work; the rounds "
        "alternate so both servers see the same load.",
        "",
        "| model | without capture (req/s) | with capture (req/s) | ratio | throughput cost | "
        "server CPU ms/request without → with | CPU cost | load avg (min-max) | captured / dropped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['off']:.1f} | {r['on']:.1f} | {r['ratio']:.3f} | {100 * (1 - r['ratio']):+.1f} % "
            f"| {r['cpu_ms_off']:.2f} → {r['cpu_ms_on']:.2f} | {100 * (r['cpu_ms_on'] / r['cpu_ms_off'] - 1):+.1f} % "
            f"| {r['load_min']:.2f}-{r['load_max']:.2f} | {r['on_disk']} / {int(r['dropped'])} |"
        )
    spent = path_cost["request_us"] + path_cost["writer_us"]
    lines += [
        "",
        f"Capture's own CPU per record, measured in-process (load-independent): {path_cost['request_us']:.1f} µs "
        f"on the request thread + {path_cost['writer_us']:.1f} µs on the writer thread = {spent:.0f} µs, that is "
        + ", ".join(
            f"{100 * spent / (1000 * r['cpu_ms_off']):.1f} % of {r['model']}'s CPU per request" for r in rows
        )
        + ".",
    ]
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
    parser.add_argument(
        "--threads", type=int, default=1, help="model threads per server (batchlane serve --threads)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    models = ["tiny", "minilm"] if args.model == "both" else [args.model]
    path_cost = capture_path_cost()
    rows = [measure(m, args.clients, args.requests, args.rounds, args.seed, args.threads) for m in models]
    report = render(rows, args.clients, args.requests, args.rounds, args.threads, uptime, path_cost)
    print(report)
    path = run_mod.write_results_file(
        report, name="capture-overhead", title="Data capture overhead", script="bench/capture_overhead.py"
    )
    logger.info("written to %s", path)
    print(json.dumps([{k: v for k, v in r.items() if not k.startswith("rounds")} for r in rows]))


if __name__ == "__main__":
    main()
