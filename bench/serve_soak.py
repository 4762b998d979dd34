"""Real-time soak: ``batchlane serve`` with dynamic batching on, under constant load; RSS and open fds must stay flat.

``--clients`` threads on loopback each send single-record JSON requests in a closed loop (texts of seeded random
lengths, 3 to 300 words, so every batch has a new shape) for ``--duration`` seconds after a ``--warmup``. A sampler
reads the server process's resident memory and open file descriptors (psutil, from /proc; children included) every
``--sample-s`` seconds. Reported: RSS and fds at the start (after warm-up), at the end, their maximum and their
slope (least squares over the samples), requests/s and p50/p99 latency, and answers by HTTP status. The exit status
is 1 when a request failed, the fd count grew by more than ``--max-fd-growth`` or RSS by more than
``--max-rss-growth-mb``.

The model is a tiny random BERT (2 layers × 32, built in a temporary folder) unless ``--model-dir`` names one:
the point is the server's own memory and descriptors (HTTP, batching queue, threads, oneDNN caches), not the
model's speed.

    python bench/serve_soak.py                                  # 10 minutes, 8 clients (make bench-soak)
    python bench/serve_soak.py --duration 20 --warmup 3 --sample-s 1 --no-write --json out.json   # the test's
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

logger = logging.getLogger("bench")


def make_texts(count: int, seed: int) -> list[str]:
    """``count`` texts of log-uniform lengths (3-300 words) drawn from the tokenizer's whole-word vocabulary."""
    from batchlane.examples.tiny_models import TOKENIZER_VOCAB

    words = [w for w in TOKENIZER_VOCAB.read_text(encoding="utf-8").split() if w.isalpha() and len(w) > 2]
    rng = random.Random(seed)
    return [" ".join(rng.choices(words, k=round(3 * 100 ** rng.random()))) for _ in range(count)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per minute."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def tenths(samples: list[dict[str, float]]) -> list[dict[str, float]]:
    """The samples nearest to 0 %, 10 %, ..., 100 % of the run."""
    t0, t1 = samples[0]["t"], samples[-1]["t"]
    return [min(samples, key=lambda s: abs(s["t"] - t0 - i * (t1 - t0) / 10)) for i in range(11)]


class Sampler:
    """Samples RSS (MB) and open fds of a process and its children every ``every_s`` seconds in a thread."""

    def __init__(self, pid: int, every_s: float) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.samples: list[dict[str, float]] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)

    def sample(self) -> dict[str, float]:
        import psutil

        rss = fds = threads = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                rss += proc.memory_info().rss
                fds += proc.num_fds()
                threads += proc.num_threads()
            except psutil.NoSuchProcess:  # a child that ended between the listing and the read
                continue
        point = {"t": time.monotonic(), "rss_mb": rss / 2**20, "fds": fds, "threads": threads}
        self.samples.append(point)
        return point

    def _loop(self) -> None:
        while not self._halt.wait(self.every_s):
            self.sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        self._thread.join()


class Load:
    """``clients`` threads, each with its own keep-alive HTTP client, posting single-record requests until stopped."""

    def __init__(self, url: str, texts: list[str], clients: int) -> None:
        self.url, self.texts, self.clients = url, texts, clients
        self.recording = threading.Event()
        self._halt = threading.Event()
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), name=f"soak-client-{i}", daemon=True)
            for i in range(clients)
        ]

    def _client(self, index: int) -> None:
        import httpx

        rng = random.Random(index)
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while not self._halt.is_set():
                body = json.dumps({"inputs": rng.choice(self.texts)})
                started = time.perf_counter()
                try:
                    answer = http.post(
                        "/invocations", content=body, headers={"content-type": "application/json"}
                    )
                    status = str(answer.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - started
                if self.recording.is_set():
                    with self._lock:
                        self.statuses[status] += 1
                        if status == "200":
                            self.latencies.append(elapsed)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(timeout=150)


def soak(args: argparse.Namespace) -> dict[str, Any]:
    import variants as variants_mod

    with tempfile.TemporaryDirectory(prefix="bench-soak-") as scratch:
        model_dir = args.model_dir
        if model_dir is None:
            from batchlane.examples.tiny_models import build_tiny_classifier

            model_dir = str(build_tiny_classifier(Path(scratch) / "tiny-bert", arch="bert"))
        flags = [
            "--max-batch-delay-ms",
            str(args.max_batch_delay_ms),
            "--max-batch-size",
            str(args.max_batch_size),
        ]
        server = variants_mod.Server(model_dir, {}, flags)
        sampler = Sampler(server.process.pid, args.sample_s)
        load = Load(server.url, make_texts(500, args.seed), args.clients)
        try:
            load.start()
            time.sleep(args.warmup)
            load.recording.set()
            first = sampler.sample()
            began, load_avg = time.perf_counter(), os.getloadavg()[0]
            sampler.start()
            time.sleep(args.duration)
            load.recording.clear()
            seconds = time.perf_counter() - began
            sampler.stop()
            last = sampler.sample()
            load.stop()
        finally:
            server.stop()
    samples = sampler.samples
    t0 = first["t"]
    answered = sum(load.statuses.values())
    return {
        "model": "tiny random BERT (2 × 32)" if args.model_dir is None else args.model_dir,
        "clients": args.clients,
        "duration_s": round(seconds, 1),
        "load_average": round(load_avg, 2),
        "requests": answered,
        "statuses": dict(load.statuses),
        "errors": answered - load.statuses.get("200", 0),
        "rps": answered / seconds,
        "p50_ms": 1000 * percentile(load.latencies, 0.5),
        "p99_ms": 1000 * percentile(load.latencies, 0.99),
        "samples": len(samples),
        "rss_mb": {
            "start": first["rss_mb"],
            "end": last["rss_mb"],
            "max": max(s["rss_mb"] for s in samples),
            "slope_per_min": slope_per_min([(s["t"] - t0, s["rss_mb"]) for s in samples]),
            "slope_second_half_per_min": slope_per_min(
                [(s["t"] - t0, s["rss_mb"]) for s in samples[len(samples) // 2 :]]
            ),
            "tenths": [round(s["rss_mb"], 1) for s in tenths(samples)],
        },
        "fds": {
            "start": first["fds"],
            "end": last["fds"],
            "max": max(s["fds"] for s in samples),
            "slope_per_min": slope_per_min([(s["t"] - t0, s["fds"]) for s in samples]),
            "tenths": [s["fds"] for s in tenths(samples)],
        },
        "threads": {
            "start": first["threads"],
            "end": last["threads"],
            "max": max(s["threads"] for s in samples),
        },
    }


def problems(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    found = []
    if result["errors"]:
        found.append(f"{result['errors']} requests did not answer 200: {result['statuses']}")
    if not result["requests"]:
        found.append("no request was answered")
    fd_growth = result["fds"]["max"] - result["fds"]["start"]
    if fd_growth > args.max_fd_growth:
        found.append(f"open fds grew by {fd_growth} (bound {args.max_fd_growth})")
    rss_growth = result["rss_mb"]["end"] - result["rss_mb"]["start"]
    if rss_growth > args.max_rss_growth_mb:
        found.append(f"RSS grew by {rss_growth:.1f} MB (bound {args.max_rss_growth_mb} MB)")
    return found


def render(result: dict[str, Any], args: argparse.Namespace, found: list[str]) -> str:
    rss, fds, threads = result["rss_mb"], result["fds"], result["threads"]
    lines = [
        f"Real-time soak ({time.strftime('%Y-%m-%d %H:%M')}): `batchlane serve` with `--max-batch-delay-ms "
        f"{args.max_batch_delay_ms} --max-batch-size {args.max_batch_size}`, model: {result['model']}; "
        f"{result['clients']} closed-loop clients on loopback sending single-record JSON requests (3-300 words) for "
        f"{result['duration_s']:.0f} s after a {args.warmup:.0f} s warm-up; {result['samples']} samples of the server "
        f"process (children included) every {args.sample_s:g} s. 1-minute load average at the start: "
        f"{result['load_average']}.",
        "",
        "| | start (after warm-up) | end | max | slope |",
        "|---|---:|---:|---:|---:|",
        f"| RSS (MB) | {rss['start']:.1f} | {rss['end']:.1f} | {rss['max']:.1f} | {rss['slope_per_min']:+.2f} MB/min |",
        f"| open file descriptors | {fds['start']} | {fds['end']} | {fds['max']} | {fds['slope_per_min']:+.2f} /min |",
        f"| threads | {threads['start']} | {threads['end']} | {threads['max']} | |",
        "",
        f"RSS at each tenth of the run (MB): {' → '.join(f'{v:.1f}' for v in rss['tenths'])}; slope over the "
        f"second half {rss['slope_second_half_per_min']:+.2f} MB/min. Open fds: "
        f"{' → '.join(str(v) for v in fds['tenths'])}.",
        "",
        "| requests | requests/s | p50 latency (ms) | p99 latency (ms) | answers by status |",
        "|---:|---:|---:|---:|---|",
        f"| {result['requests']:,} | {result['rps']:.1f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} | "
        + ", ".join(f"{k}: {v:,}" for k, v in sorted(result["statuses"].items()))
        + " |",
        "",
        "Verdict: "
        + (
            "; ".join(found)
            if found
            else f"flat (fds within +{args.max_fd_growth}, RSS within +{args.max_rss_growth_mb} MB), no failed "
            "request."
        ),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=600.0, help="seconds of measured load (default 600)"
    )
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of load before the first sample")
    parser.add_argument("--clients", type=int, default=8, help="concurrent closed-loop clients")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS/fd samples")
    parser.add_argument("--max-batch-delay-ms", type=float, default=10.0)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument(
        "--model-dir", default=None, help="a model folder to serve (default: a tiny random BERT)"
    )
    parser.add_argument(
        "--max-fd-growth", type=int, default=8, help="fail if open fds grow by more than this"
    )
    parser.add_argument("--max-rss-growth-mb", type=float, default=64.0, help="fail if RSS grows by more MB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    result = soak(args)
    found = problems(result, args)
    report = render(result, args, found)
    print(report)
    if args.json:
        args.json.write_text(json.dumps({**result, "problems": found}, indent=2))
    if not args.no_write:
        import run as run_mod

        path = run_mod.write_results_file(
            report, name="soak", title="Real-time soak", script="bench/serve_soak.py"
        )
        logger.info("written to %s", path)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
