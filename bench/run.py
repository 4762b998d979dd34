"""Throughput benchmark of batch text classification on this machine (``make bench``; ``make bench-quick``).

One run builds a seeded long-tailed corpus of real CFPB narratives (median ~120 tokens, p95 ~500, cap 512),
measures every variant of ``variants.VARIANTS`` in its own process (docs/s, real tokens/s, padding waste, peak RSS,
label agreement with fp32, model FLOPs utilisation against a matmul roofline measured in the same run), classifies
the CFPB test split with the precision-changing variants (agreement and accuracy), prints a markdown table and
writes it to ``bench/results/<date>-<machine>.md``.

    python bench/run.py                 # the full run: 3 interleaved rounds (about 45-60 minutes on 2 quiet cores)
    python bench/run.py --quick         # 200 docs, 300 test rows, 1 round (about 10 minutes on 2 quiet cores)
    python bench/run.py --memory        # peak RSS of a large vs a 10x smaller input through `batchlane transform`
    python bench/realtime.py            # dynamic batching under concurrent single-record load
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import resource
import statistics
import subprocess
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
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
REFERENCE = "sorted-fp32"
BASELINE = "pipeline"
HAND_WRITTEN = ("naive", "sorted-fp32", "sorted-bf16")
# The engines a performance-minded user would pick instead of batchlane: "× best peer" divides by the fastest.
PEERS = ("pipeline", "sorted-fp32", "sorted-bf16", "ov-bare", "ov-bare-int8", "onnx-fp32", "onnx-int8")
CALIBRATION_TEXTS = 300
DEFAULT_VARIANTS = list(variants_mod.VARIANTS)


# -- machine and model arithmetic -----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    from batchlane.serving import precision

    hardware = precision.detect()
    return {
        "cpu": hardware.cpu_model,
        "cores": hardware.physical_cores,
        "logical": hardware.logical_cpus,
        "describe": hardware.describe(),
        "bf16_units": "AMX" if hardware.amx_bf16 else ("AVX512-BF16" if hardware.avx512_bf16 else "none"),
        "python": platform.python_version(),
    }


def machine_slug(info: dict[str, Any]) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", info["cpu"].lower()).strip("-") or "cpu"
    return f"{name}-{info['cores']}c"


def write_results_file(report: str, *, name: str, title: str, script: str) -> Path:
    """Write ``report`` as ``results/<date>-<machine>-<name>.md`` under ``# <title> on <machine>`` and the command
    that produced it (``script`` plus this process's arguments); returns the path."""
    info = machine()
    path = RESULTS / f"{time.strftime('%Y-%m-%d')}-{machine_slug(info)}-{name}.md"
    path.parent.mkdir(exist_ok=True)
    command = " ".join([f"python {script}", *sys.argv[1:]])
    path.write_text(f"# {title} on {info['describe']}\n\nCommand: `{command}`\n\n{report}")
    return path


def uptime() -> str:
    """``uptime``'s line (load averages over 1, 5 and 15 minutes), for the results file."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"load average {os.getloadavg()}"


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def cpu_sample() -> tuple[int, int]:
    """``(busy, total)`` jiffies of all CPUs since boot, from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def cpu_busy(seconds: float = 2.0) -> float:
    """Share of all CPUs busy over ``seconds``: between variants, that is other processes."""
    sample = cpu_sample
    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except OSError:
        return float("nan")
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_for_quiet(limit_s: float, threshold: float = 0.1) -> float:
    """Wait (up to ``limit_s``) until other processes use less than ``threshold`` of the CPUs; returns the last share."""
    deadline = time.monotonic() + limit_s
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        logger.info("waiting for a quiet machine: %.0f %% of the CPUs busy", 100 * busy)
        time.sleep(10)
        busy = cpu_busy()
    return busy


def flops_per_doc(config: dict[str, Any], tokens: int) -> float:
    """Forward FLOPs of a BERT-style encoder + pooler + head for one unpadded document of ``tokens`` tokens."""
    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    dense = 2 * tokens * (4 * hidden * hidden + 2 * hidden * inner)
    attention = 2 * 2 * tokens * tokens * hidden
    head = 2 * hidden * hidden + 2 * hidden * config.get("num_labels", len(config.get("id2label", {})) or 2)
    return layers * (dense + attention) + head


def padded_tokens(kind: str, lengths: list[int], info: dict[str, Any]) -> int:
    """Tokens each variant pushes through the model, padding included (its batching rule re-applied)."""
    if kind == "naive":
        return sum(lengths)
    if kind == "pipeline":
        size = variants_mod.PIPELINE_BATCH
        return sum(
            max(lengths[i : i + size]) * len(lengths[i : i + size]) for i in range(0, len(lengths), size)
        )
    if kind == "sorted":
        ordered, total, start = sorted(lengths, reverse=True), 0, 0
        while start < len(ordered):
            count = max(1, min(len(ordered) - start, variants_mod.BUDGET // ordered[start]))
            total += ordered[start] * count
            start += count
        return total
    from batchlane.serving.batching import plan_batches
    from batchlane.serving.classifier import (
        DEFAULT_BATCH_OVERHEAD,
        DEFAULT_MAX_BATCH_SIZE,
        DEFAULT_TOKEN_BUDGET,
        WINDOW,
    )

    budget = info.get("token_budget", DEFAULT_TOKEN_BUDGET["cpu"])
    size = info.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE["cpu"])
    overhead = info.get("batch_overhead", DEFAULT_BATCH_OVERHEAD["cpu"])
    chunk = WINDOW if kind == "handler" else -(-len(lengths) // variants_mod.TRANSFORM_FILES)
    total = 0
    for start in range(0, len(lengths), chunk):
        part = lengths[start : start + chunk]
        batches = plan_batches(part, budget, size, batch_overhead=overhead)
        total += sum(max(part[i] for i in batch) * len(batch) for batch in batches)
    return total


# -- workers ----------------------------------------------------------------------------------------------------------
def run_worker(name: str, state_path: Path, result_path: Path) -> None:
    state = json.loads(state_path.read_text())
    if name == "roofline":
        result: dict[str, Any] = variants_mod.run_roofline()
    elif name == "prepare-onnx":
        result = variants_mod.prepare_onnx(state["model_dir"])
    elif name == "prepare-openvino":
        result = variants_mod.prepare_openvino(state["model_dir"])
    else:
        variant = variants_mod.VARIANTS[name]
        if variant.kind == "transform":
            result = variants_mod.run_transform(variant, state)
        else:
            result = variants_mod.run_in_process(variant, state)
    result_path.write_text(json.dumps(result))


def spawn_quiet(name: str, state_path: Path, quiet_s: float, attempts: int = 3) -> dict[str, Any]:
    """``spawn``, repeated (after waiting for quiet) while other processes took more than 10 % of the CPUs."""
    result = spawn(name, state_path, quiet_s=quiet_s)
    for _ in range(attempts - 1 if quiet_s else 0):
        if result["others_busy"] <= 0.1:
            break
        logger.info(
            "%s shared the CPUs with other processes (%.0f %%); measuring again",
            name,
            100 * result["others_busy"],
        )
        result = spawn(name, state_path, quiet_s=quiet_s)
    return result


def spawn(name: str, state_path: Path, timeout: float = 3600, quiet_s: float = 0) -> dict[str, Any]:
    result_path = state_path.with_name(f"result-{name}.json")
    command = [sys.executable, str(HERE / "run.py"), "--worker", name, "--state", str(state_path)]
    command += ["--result", str(result_path)]
    wait_for_quiet(quiet_s)
    started = time.perf_counter()
    load = load_average()
    busy_start, total_start = cpu_sample()
    children_start = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    busy_end, total_end = cpu_sample()
    children_end = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU the other processes used while this variant ran (all busy time minus the worker's and its children's).
    ours = (children_end.ru_utime + children_end.ru_stime) - (
        children_start.ru_utime + children_start.ru_stime
    )
    ticks = os.sysconf("SC_CLK_TCK")
    others = max(0.0, (busy_end - busy_start) / ticks - ours) / max(1e-9, (total_end - total_start) / ticks)
    if done.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{done.stderr[-4000:]}")
    result = json.loads(result_path.read_text())
    result["load_before"] = load
    result["others_busy"] = round(others, 3)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


# -- the report -------------------------------------------------------------------------------------------------------
def agreement(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a) if a else float("nan")


def roofline_kind(name: str, precision: str | None) -> str:
    """Which matmul roofline a row is compared with: int8, bf16 or fp32."""
    text = f"{name} {precision or ''}"
    return "int8" if "int8" in text else "bf16" if "bf16" in text else "fp32"


def summarise(
    results: dict[str, dict[str, Any]], lengths: list[int], config: dict[str, Any], roofline: dict[str, float]
) -> list[dict[str, Any]]:
    real = sum(lengths)
    flops = sum(flops_per_doc(config, n) for n in lengths)
    rows = []
    reference = results.get(REFERENCE, {}).get("labels")
    for name, result in results.items():
        variant = variants_mod.VARIANTS[name]
        seconds = result["seconds"]
        padded = padded_tokens(
            "sorted" if variant.kind == "ov-bare" else variant.kind, lengths, result.get("info", {})
        )
        kind = roofline_kind(name, result.get("info", {}).get("precision"))
        rows.append(
            {
                "name": name,
                "label": variant.label,
                "docs_s": len(lengths) / seconds,
                "tokens_s": real / seconds,
                "padding": 1 - real / padded,
                "rss": result["peak_rss_mb"],
                "server_rss": result.get("server_rss_mb"),
                "agree": agreement(result["labels"], reference) if reference else float("nan"),
                "mfu": flops / seconds / (roofline[kind] * 1e9),
                "roofline": kind,
                "rounds": result.get("rounds", [seconds]),
                "gflops": flops / seconds / 1e9,
                "load": result["load_before"],
                "busy": result.get("others_busy", float("nan")),
                "startup_s": result.get("startup_s"),
                "info": result.get("info", {}),
            }
        )
    base = next((r["docs_s"] for r in rows if r["name"] == BASELINE), None)
    best_peer = max((r["docs_s"] for r in rows if r["name"] in PEERS), default=None)
    for row in rows:
        row["ratio"] = row["docs_s"] / base if base else float("nan")
        row["peer_ratio"] = row["docs_s"] / best_peer if best_peer else float("nan")
    return rows


def _pct(value: float) -> str:
    return "–" if value != value else f"{100 * value:.1f} %"


def render(
    rows: list[dict[str, Any]],
    test_rows: list[dict[str, Any]],
    info: dict[str, Any],
    stats: dict[str, Any],
    roofline: dict[str, float],
    args: argparse.Namespace,
) -> str:
    lines = [
        f"# Benchmark {time.strftime('%Y-%m-%d %H:%M')} on {info['describe']}",
        "",
        f"Command: `{' '.join(['python', 'bench/run.py', *sys.argv[1:]])}`; {args.rounds} interleaved round(s), "
        f"median docs/s; Python {info['python']}.",
        "",
        f"`uptime` at start: `{info['uptime_start']}`; at end: `{info['uptime_end']}`. The load column is the "
        "1-minute load average before each variant's first round and the share of the CPUs other processes used "
        "while it ran (a shared machine makes every number here lower and noisier than on a quiet one).",
        "",
        f"Corpus: {stats['docs']} documents (seed {args.seed}) cut from CFPB train narratives: token lengths median "
        f"{stats['median']}, mean {stats['mean']}, p95 {stats['p95']}, max {stats['max']}; {stats['tokens']:,} "
        f"real tokens. Model: all-MiniLM-L6-v2 (6 × 384) with an 8-label CFPB head "
        f"({'random' if args.random_head else 'linear probe'}). Roofline (best dense 2048² matmul, all cores): "
        f"fp32 {roofline['fp32']} GFLOP/s, bf16 {roofline['bf16']} GFLOP/s, int8 (`torch._int_mm`) "
        f"{roofline.get('int8', float('nan'))} GOP/s. A document costs "
        f"{info['gflop_per_doc']:.1f} GFLOP on average. × best peer divides by the fastest of "
        f"{', '.join(r['name'] for r in rows if r['name'] in PEERS)}.",
        "",
        "| variant | docs/s | × pipeline | × best peer | real tokens/s | padding waste | peak RSS (MB) | "
        "labels = fp32 | test labels = fp32 | accuracy | model GFLOP/s | of matching roofline | "
        "load (others' CPU share) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tests = {r["name"]: r for r in test_rows}
    for r in rows:
        rss = f"{r['rss']:.0f}"
        if r["server_rss"]:
            rss = f"{r['rss']:.0f} runner + {r['server_rss']:.0f} server"
        precision = r["info"].get("precision")
        runtime = r["info"].get("runtime")
        shown = " ".join(
            x for x in (runtime if r["name"].startswith(("handler", "openvino")) else None, precision) if x
        )
        label = r["label"] + (f" → {shown}" if shown else "")
        test = tests.get(r["name"], {})
        lines.append(
            f"| {label} | {r['docs_s']:.1f} | {r['ratio']:.2f} | {r['peer_ratio']:.2f} | {r['tokens_s']:,.0f} | "
            f"{_pct(r['padding'])} | {rss} | {_pct(r['agree'])} | {_pct(test.get('agree', float('nan')))} | "
            f"{_pct(test.get('accuracy', float('nan')))} | {r['gflops']:.1f} | {_pct(r['mfu'])} {r['roofline']} | "
            f"{r['load']} ({100 * r['busy']:.0f} %) |"
        )
    transform = [r for r in rows if r["name"].startswith("transform") and r["startup_s"]]
    if transform:
        lines += [
            "",
            "Transform rows time the job alone (submit to the last `.out` committed, through HTTP) against a "
            "`batchlane serve` already up; its start-up took "
            + ", ".join(f"{r['startup_s']:.1f} s ({r['name']})" for r in transform)
            + " (model load, and for ONNX/OpenVINO the cached graph).",
        ]
    if info.get("openvino"):
        lines += [
            "",
            "OpenVINO conversion (untimed, before the variants): "
            + "; ".join(
                f"{k}: first load {v['convert_s']} s, warm-cache load {v['warm_load_s']} s"
                for k, v in info["openvino"].items()
                if isinstance(v, dict)  # spawn adds the load figures beside the per-IR entries
            )
            + ".",
        ]
    if test_rows:
        lines += [
            "",
            f"CFPB test split ({test_rows[0]['docs']} narratives, truncated to 512 tokens): labels compared with fp32, "
            "and accuracy against the true product labels.",
            "",
            "| variant | labels = fp32 | accuracy | accuracy change |",
            "|---|---:|---:|---:|",
        ]
        for r in test_rows:
            lines.append(
                f"| {r['label']} | {_pct(r['agree'])} | {_pct(r['accuracy'])} | {100 * r['delta']:+.1f} pts |"
            )
    lines += ["", *targets(rows, test_rows)]
    return "\n".join(lines) + "\n"


def targets(rows: list[dict[str, Any]], test_rows: list[dict[str, Any]]) -> list[str]:
    """The end-to-end targets of issue 14: ≥ 8× the pipeline at ≥ 99 % agreement, ≥ 1.0× the best bare OpenVINO
    figure at the same precision, and ≥ 10× the pipeline with int8 at ≥ 99 % agreement."""
    by = {r["name"]: r for r in rows}
    agree = {r["name"]: r["agree"] for r in test_rows}
    if BASELINE not in by:
        return []
    out = [
        "## Targets (issue 14)",
        "",
        "| e2e variant | × pipeline | test labels = fp32 | target | met |",
        "|---|---:|---:|---|---|",
    ]
    for name in (n for n in by if n.startswith("transform")):
        r = by[name]
        int8 = "int8" in name
        source = "openvino-int8" if int8 else "handler"
        agreement = agree.get(source, float("nan"))
        goal = 10 if int8 else 8
        met = r["ratio"] >= goal and agreement >= 0.99
        out.append(
            f"| {r['label']} | {r['ratio']:.1f}× | {_pct(agreement)} (from {source}) | ≥ {goal}× at ≥ 99 % | "
            f"{'met' if met else 'missed'} |"
        )
        bare = by.get("ov-bare-int8" if int8 else "ov-bare")
        if bare:
            ratio = r["docs_s"] / bare["docs_s"]
            out.append(
                f"| {r['label']} vs {bare['label']} | {ratio:.2f}× | | ≥ 1.0× | {'met' if ratio >= 1 else 'missed'} |"
            )
    return out


# -- main -------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small corpus and test sample (a few minutes)")
    parser.add_argument("--docs", type=int, help="corpus size (default 1000, quick 200)")
    parser.add_argument(
        "--test-docs", type=int, help="CFPB test narratives to classify (default all 3000, quick 300)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rounds",
        type=int,
        help="interleaved rounds (every variant once per round; the table shows the median; default 3, quick 1)",
    )
    parser.add_argument("--variants", help=f"comma-separated subset of {','.join(DEFAULT_VARIANTS)}")
    parser.add_argument("--random-head", action="store_true", help="skip fitting the probe head")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each variant, wait up to this long for other processes to leave the CPUs idle, and measure "
        "a variant again (up to 3 times) when they took more than 10 %% of the CPUs while it ran",
    )
    parser.add_argument("--memory", action="store_true", help="run the memory check instead (see memory.py)")
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="the engine of the end-to-end transform variant: local (a batchlane serve) or ray (a local Ray, each "
        "replica loading the model; docs/ray.md)",
    )
    parser.add_argument(
        "--replicas", type=int, help="with --engine ray: model replicas (default: the engine's, 1 on CPU)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.worker:
        run_worker(args.worker, args.state, args.result)
        return
    if args.memory:
        import memory

        memory.main(quick=args.quick)
        return
    # Exported ONNX graphs and OpenVINO IRs stay with the benchmark's cache, not in the user's ~/.batchlane.
    os.environ.setdefault("BATCHLANE_ONNX_CACHE", str(CACHE / "onnx"))
    os.environ.setdefault("BATCHLANE_OPENVINO_CACHE", str(CACHE / "openvino"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = args.variants.split(",") if args.variants else DEFAULT_VARIANTS
    unknown = [n for n in names if n not in variants_mod.VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {DEFAULT_VARIANTS}")
    docs = args.docs or (200 if args.quick else 1000)
    test_docs = args.test_docs if args.test_docs is not None else (300 if args.quick else 3000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    info = machine()
    info["load_start"] = load_average()
    info["uptime_start"] = uptime()
    logger.info("machine: %s; load %.2f", info["describe"], info["load_start"])

    from transformers import AutoTokenizer

    data = corpus_mod.find_data()
    train, test = corpus_mod.read_split(data, "train"), corpus_mod.read_split(data, "test")
    model_dir = model_mod.build(CACHE, train, seed=args.seed, random_head=args.random_head)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    texts = corpus_mod.build_corpus([t for t, _ in train], tokenizer, docs, seed=args.seed)
    lengths = corpus_mod.token_lengths(texts, tokenizer)
    stats = corpus_mod.describe_lengths(lengths)
    logger.info("corpus: %s", stats)
    test = test[:test_docs]
    config = json.loads((model_dir / "config.json").read_text())
    info["gflop_per_doc"] = sum(flops_per_doc(config, n) for n in lengths) / len(lengths) / 1e9
    # int8 calibrates on train narratives the corpus does not start from (it takes them in a seeded order from the
    # front); the same file for every int8 variant, so they share one cached IR.
    calibration = CACHE / f"calibration-{args.seed}.jsonl"
    if not calibration.is_file():
        with calibration.open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps({"text": t}) + "\n" for t, _ in train[-CALIBRATION_TEXTS:])
    os.environ.setdefault("BATCHLANE_CALIBRATION_DATA", str(calibration))

    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        work = Path(scratch)
        for name, rows in (("corpus", texts), ("test", [t for t, _ in test])):
            with (work / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
                handle.writelines(json.dumps({"text": t}) + "\n" for t in rows)
        state = {
            "model_dir": str(model_dir),
            "corpus": str(work / "corpus.jsonl"),
            "test": str(work / "test.jsonl") if test else None,
            "engine": args.engine,
            "replicas": args.replicas,
        }
        state_path = work / "state.json"
        state_path.write_text(json.dumps(state))
        roofline = spawn_quiet("roofline", state_path, args.wait_quiet)
        logger.info("roofline: fp32 %s GFLOP/s, bf16 %s GFLOP/s", roofline["fp32"], roofline["bf16"])
        if any("onnx" in name for name in names):
            spawn("prepare-onnx", state_path)  # export once, untimed, so no variant's RSS includes the export
        if (
            any(("openvino" in name or "ov-" in name) for name in names)
            or "handler" in names
            or "transform" in names
        ):
            info["openvino"] = spawn("prepare-openvino", state_path)  # convert and quantise once, untimed
        results: dict[str, dict[str, Any]] = {}
        for round_ in range(args.rounds):
            for name in names:  # interleaved: a burst of load from other processes hits every variant alike
                logger.info("round %d: running %s (load %.2f)", round_ + 1, name, load_average())
                result = spawn_quiet(name, state_path, args.wait_quiet)
                logger.info("%s: %.1f docs/s", name, len(texts) / result["seconds"])
                if name not in results:
                    results[name] = {**result, "rounds": []}
                results[name]["rounds"].append(result["seconds"])
        for result in results.values():
            result["seconds"] = statistics.median(result["rounds"])
    info["load_end"] = load_average()
    info["uptime_end"] = uptime()
    rows = summarise(results, lengths, config, roofline)
    test_rows = []
    gold = [label for _, label in test]
    reference = results.get(REFERENCE, {}).get("test_labels")
    if reference:
        base_accuracy = agreement(reference, gold)
        for name, result in results.items():
            if "test_labels" in result:
                accuracy = agreement(result["test_labels"], gold)
                test_rows.append(
                    {
                        "name": name,
                        "label": variants_mod.VARIANTS[name].label,
                        "docs": len(gold),
                        "agree": agreement(result["test_labels"], reference),
                        "accuracy": accuracy,
                        "delta": accuracy - base_accuracy,
                    }
                )
    report = render(rows, test_rows, info, stats, roofline, args)
    print(report)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        suffix = "-quick" if args.quick else ""
        path = RESULTS / f"{time.strftime('%Y-%m-%d')}-{machine_slug(info)}{suffix}.md"
        path.write_text(report)
        logger.info("written to %s", path.relative_to(HERE.parent))


if __name__ == "__main__":
    main()
