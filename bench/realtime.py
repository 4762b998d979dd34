"""Real-time load: concurrent single-record requests against ``batchlane serve``, with and without dynamic batching.

A closed loop of ``--clients`` concurrent clients on loopback, each sending one document per request (drawn from
the benchmark corpus, so lengths are long-tailed) until ``--requests`` have been answered. Reports requests/s and
latency percentiles per server configuration. The clients run on the same cores as the server, so absolute numbers
are lower than a remote load generator would see; the comparison between configurations is the point.

    python bench/realtime.py                       # 16 clients, 320 requests per configuration
    python bench/realtime.py --clients 32 --requests 640
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus as corpus_mod  # noqa: E402
import model as model_mod  # noqa: E402
import variants as variants_mod  # noqa: E402

logger = logging.getLogger("bench")
CONFIGS = (
    ("no batching (one forward per request)", []),
    ("--max-batch-delay-ms 0 (take what is queued)", ["--max-batch-delay-ms", "0", "--max-batch-size", "64"]),
    ("--max-batch-delay-ms 10", ["--max-batch-delay-ms", "10", "--max-batch-size", "64"]),
)


async def drive(url: str, texts: list[str], clients: int, requests: int) -> tuple[float, list[float]]:
    import httpx

    latencies: list[float] = []
    counter = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for index in counter:
            body = json.dumps({"inputs": texts[index % len(texts)]})
            started = time.perf_counter()
            answer = await http.post(
                "/invocations", content=body, headers={"content-type": "application/json"}
            )
            answer.raise_for_status()
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - started, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(model_dir: Path, texts: list[str], clients: int, requests: int) -> list[dict[str, Any]]:
    rows = []
    for title, args in CONFIGS:
        server = variants_mod.Server(str(model_dir), {}, args)
        try:
            asyncio.run(drive(server.url, texts[-clients:], clients, 2 * clients))  # warm-up
            load = round(os.getloadavg()[0], 2)
            seconds, latencies = asyncio.run(drive(server.url, texts, clients, requests))
        finally:
            server.stop()
        rows.append(
            {
                "config": title,
                "rps": requests / seconds,
                "p50": 1000 * statistics.median(latencies),
                "p99": 1000 * percentile(latencies, 0.99),
                "load": load,
            }
        )
        logger.info("%s: %.1f requests/s", title, rows[-1]["rps"])
    return rows


def render(rows: list[dict[str, Any]], clients: int, requests: int, docs: list[int]) -> str:
    lines = [
        f"Real-time load ({time.strftime('%Y-%m-%d %H:%M')}): {clients} concurrent clients on loopback, {requests} "
        f"single-record requests per configuration (corpus lengths: median {docs[len(docs) // 2]} tokens).",
        "",
        "| server | requests/s | × no batching | p50 latency (ms) | p99 latency (ms) | load |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = rows[0]["rps"]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['rps']:.1f} | {r['rps'] / base:.2f} | {r['p50']:.0f} | {r['p99']:.0f} | {r['load']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    from transformers import AutoTokenizer

    train = corpus_mod.read_split(corpus_mod.find_data(), "train")
    model_dir = model_mod.build(HERE / ".cache", train, seed=args.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    texts = corpus_mod.build_corpus([t for t, _ in train], tokenizer, args.requests, seed=args.seed + 1)
    lengths = sorted(corpus_mod.token_lengths(texts, tokenizer))
    report = render(run(model_dir, texts, args.clients, args.requests), args.clients, args.requests, lengths)
    print(report)
    import run as run_mod

    info = run_mod.machine()
    path = run_mod.RESULTS / f"{time.strftime('%Y-%m-%d')}-{run_mod.machine_slug(info)}-realtime.md"
    path.parent.mkdir(exist_ok=True)
    command = f"python bench/realtime.py --clients {args.clients} --requests {args.requests}"
    path.write_text(f"# Real-time load on {info['describe']}\n\nCommand: `{command}`\n\n{report}")
    logger.info("written to %s", path)


if __name__ == "__main__":
    main()
