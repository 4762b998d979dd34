"""The measured variants. Each runs in its own process (``run.py --worker NAME``), so peak RSS and thread settings
are its own; it loads the model, warms up, then times the classification of the whole corpus.

``pipeline``, ``naive`` and ``sorted-*`` are what users write by hand; ``ov-bare-*`` is the loop an OpenVINO expert
writes (the same IR, throughput mode, ``AsyncInferQueue``, length-sorted 8k-token batches): the peers.
``handler*``/``openvino-*``/``onnx-*`` are batchlane's default handler in-process (``SequenceClassifier.classify``);
``transform*`` is a real ``batchlane transform`` job (local engine, MultiRecord, JSON Lines files in, ``.out`` files
out) against a ``batchlane serve`` process.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchlane.testing import free_port, stop_process, wait_for_http

BUDGET = 8192  # the hand-written loops use the 8k-token budget
PIPELINE_BATCH = 32
TRANSFORM_FILES = 4


@dataclass(frozen=True)
class Variant:
    name: str
    label: str  # the row title in the table
    kind: str  # pipeline | naive | sorted | ov-bare | handler | transform
    env: dict[str, str] = field(default_factory=dict)  # BATCHLANE_* settings for handler/transform
    autocast: bool = False  # sorted loops: bf16 autocast
    test_split: bool = False  # also classify the CFPB test split (agreement and accuracy)


# A blank BATCHLANE_CALIBRATION_DATA hides run.py's calibration file: ONNX Runtime's int8 is then dynamic.
NO_CALIBRATION = {"BATCHLANE_CALIBRATION_DATA": ""}

VARIANTS = {
    v.name: v
    for v in (
        Variant("pipeline", "transformers pipeline, batch_size=32 (baseline)", "pipeline"),
        Variant("naive", "naive loop, one doc per forward, fp32", "naive"),
        Variant("sorted-fp32", "hand-written sorted 8k-token batches, fp32", "sorted", test_split=True),
        Variant(
            "sorted-bf16", "hand-written sorted 8k-token batches, bf16 autocast", "sorted", autocast=True, test_split=True
        ),
        Variant("ov-bare", "OpenVINO bare loop, throughput mode (auto precision)", "ov-bare"),
        Variant("ov-bare-int8", "OpenVINO bare loop, throughput mode, NNCF int8", "ov-bare", {"BATCHLANE_QUANTIZE": "int8"}),
        Variant("handler", "batchlane handler in-process (defaults: auto runtime)", "handler", test_split=True),
        Variant("handler-torch", "batchlane handler in-process, --runtime torch", "handler", {"BATCHLANE_RUNTIME": "torch"}, test_split=True),
        Variant("handler-fp32", "batchlane handler in-process, --runtime torch --precision fp32", "handler", {"BATCHLANE_RUNTIME": "torch", "BATCHLANE_PRECISION": "fp32"}),
        Variant("openvino-fp32", "batchlane handler, --runtime openvino --precision fp32", "handler", {"BATCHLANE_RUNTIME": "openvino", "BATCHLANE_PRECISION": "fp32"}),
        Variant(
            "openvino-int8",
            "batchlane handler, --runtime openvino --quantize int8",
            "handler",
            {"BATCHLANE_RUNTIME": "openvino", "BATCHLANE_QUANTIZE": "int8"},
            test_split=True,
        ),
        Variant("onnx-fp32", "batchlane handler, --runtime onnx (fp32)", "handler", {"BATCHLANE_RUNTIME": "onnx"}, test_split=True),
        Variant(
            "onnx-int8",
            "batchlane handler, --runtime onnx --quantize int8 (static, calibrated)",
            "handler",
            {"BATCHLANE_RUNTIME": "onnx", "BATCHLANE_QUANTIZE": "int8"},
            test_split=True,
        ),
        Variant(
            "onnx-int8-dynamic",
            "batchlane handler, --runtime onnx --quantize int8, no calibration texts (dynamic)",
            "handler",
            {"BATCHLANE_RUNTIME": "onnx", "BATCHLANE_QUANTIZE": "int8", **NO_CALIBRATION},
            test_split=True,
        ),
        Variant("transform", "batchlane transform end-to-end (defaults: auto runtime)", "transform"),
        Variant("transform-torch", "batchlane transform end-to-end, --runtime torch", "transform", {"BATCHLANE_RUNTIME": "torch"}),
        Variant(
            "transform-openvino-int8",
            "batchlane transform end-to-end, openvino int8",
            "transform",
            {"BATCHLANE_RUNTIME": "openvino", "BATCHLANE_QUANTIZE": "int8"},
        ),
        Variant(
            "transform-onnx-int8",
            "batchlane transform end-to-end, onnx int8",
            "transform",
            {"BATCHLANE_RUNTIME": "onnx", "BATCHLANE_QUANTIZE": "int8"},
        ),
    )
}  # fmt: skip


def peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` belongs to the current address space: ``ru_maxrss`` would also count the
    parent's RSS at fork time, since Linux carries it across ``exec``."""
    value = _vm_hwm_mb(os.getpid())
    return value if value is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _read_jsonl(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle]


def _timed(fn: Callable[[list[str]], list[str]], texts: list[str]) -> tuple[list[str], float]:
    started = time.perf_counter()
    labels = fn(texts)
    return labels, time.perf_counter() - started


def _hf(model_dir: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(model_dir, local_files_only=True)


def pipeline_labels(model_dir: str) -> Callable[[list[str]], list[str]]:
    from transformers import pipeline

    classify = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device="cpu")

    def run(texts: list[str]) -> list[str]:
        # truncation=True is what a user needs on real data: without it a text over 512 tokens fails the call.
        return [r["label"] for r in classify(texts, batch_size=PIPELINE_BATCH, truncation=True)]

    return run


def naive_labels(model_dir: str) -> Callable[[list[str]], list[str]]:
    import torch

    model, tokenizer = _hf(model_dir)
    names = model.config.id2label

    def run(texts: list[str]) -> list[str]:
        out = []
        with torch.inference_mode():
            for text in texts:
                batch = tokenizer(text, truncation=True, max_length=512, return_tensors="pt")
                out.append(names[int(model(**batch).logits.argmax(-1))])
        return out

    return run


def sorted_labels(model_dir: str, autocast: bool) -> Callable[[list[str]], list[str]]:
    """The loop an expert writes: tokenize all, sort by length, pack under a token budget, pad per batch."""
    import contextlib

    import torch

    model, tokenizer = _hf(model_dir)
    names = model.config.id2label

    def run(texts: list[str]) -> list[str]:
        ids = tokenizer(texts, truncation=True, max_length=512)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out: list[str] = [""] * len(ids)
        start = 0
        while start < len(order):
            width = len(ids[order[start]])
            count = max(1, min(len(order) - start, BUDGET // width))
            batch = order[start : start + count]
            input_ids = torch.zeros((count, width), dtype=torch.long)
            mask = torch.zeros((count, width), dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            cast = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
            with torch.inference_mode(), cast:
                predicted = model(input_ids=input_ids, attention_mask=mask).logits.argmax(-1).tolist()
            for i, p in zip(batch, predicted, strict=True):
                out[i] = names[p]
            start += count
        return out

    return run


def handler_labels(
    model_dir: str, env: dict[str, str]
) -> tuple[Callable[[list[str]], list[str]], dict[str, Any]]:
    from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier
    from batchlane.settings import ServeSettings

    options = ClassifierOptions.from_settings(ServeSettings.from_env({**os.environ, **env}))
    classifier = SequenceClassifier.load(model_dir, options)
    info = {
        "precision": classifier.precision,
        "runtime": classifier.runtime,
        "token_budget": classifier.token_budget,
        "max_batch_size": classifier.max_batch_size,
        "batch_overhead": classifier.batch_overhead,
    }
    return (lambda texts: [r["label"] for r in classifier.classify(texts)]), info


def ov_bare_labels(
    model_dir: str, env: dict[str, str]
) -> tuple[Callable[[list[str]], list[str]], dict[str, Any]]:
    """The OpenVINO loop an expert writes: the IR batchlane cached (so the same graph), compiled in throughput mode
    with bf16 where the CPU has it, length-sorted 8k-token batches fed through an ``AsyncInferQueue``."""
    import numpy as np
    import openvino as ov
    from transformers import AutoTokenizer

    from batchlane.serving import precision
    from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier
    from batchlane.settings import ServeSettings

    options = ClassifierOptions.from_settings(
        ServeSettings.from_env({**os.environ, **env, "BATCHLANE_RUNTIME": "openvino"})
    )
    ir = SequenceClassifier.load(model_dir, options).model.path  # converted (cached) by prepare-openvino
    hardware = precision.detect()
    hint = "bf16" if precision.choose_precision("auto", "cpu", hardware).name == "bf16" else "f32"
    compiled = ov.Core().compile_model(
        ir, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": hint}
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    names = json.loads((Path(model_dir) / "config.json").read_text())["id2label"]
    pool = ov.AsyncInferQueue(compiled)

    def run(texts: list[str]) -> list[str]:
        ids = tokenizer(texts, truncation=True, max_length=512)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out: list[str] = [""] * len(ids)

        def done(request: Any, batch: list[int]) -> None:
            for i, p in zip(batch, request.get_output_tensor(0).data.argmax(-1).tolist(), strict=True):
                out[i] = names[str(p)]

        pool.set_callback(done)
        start = 0
        while start < len(order):
            width = len(ids[order[start]])
            count = max(1, min(len(order) - start, BUDGET // width))
            batch = order[start : start + count]
            input_ids = np.zeros((count, width), dtype=np.int64)
            mask = np.zeros((count, width), dtype=np.int64)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            pool.start_async({"input_ids": input_ids, "attention_mask": mask}, batch)
            start += count
        pool.wait_all()
        return out

    runs = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    info = {
        "precision": ("int8 + " if env.get("BATCHLANE_QUANTIZE") else "") + {"f32": "fp32"}.get(runs, runs)
    }
    info["streams"] = int(compiled.get_property("NUM_STREAMS"))
    return run, info


def run_in_process(variant: Variant, state: dict[str, Any]) -> dict[str, Any]:
    model_dir = state["model_dir"]
    info: dict[str, Any] = {}
    if variant.kind == "ov-bare":
        fn, info = ov_bare_labels(model_dir, variant.env)
    elif variant.kind == "pipeline":
        fn = pipeline_labels(model_dir)
    elif variant.kind == "naive":
        fn = naive_labels(model_dir)
    elif variant.kind == "sorted":
        fn = sorted_labels(model_dir, variant.autocast)
    else:
        fn, info = handler_labels(model_dir, variant.env)
    corpus = _read_jsonl(Path(state["corpus"]))
    fn(corpus[:8])  # warm-up: lazy initialisation and first-shape kernels are not throughput
    labels, seconds = _timed(fn, corpus)
    result: dict[str, Any] = {"labels": labels, "seconds": seconds, "info": info}
    if variant.test_split and state.get("test"):
        result["test_labels"] = fn(_read_jsonl(Path(state["test"])))
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Server:
    """``batchlane serve`` on a free loopback port, for the transform and real-time benchmarks."""

    def __init__(self, model_dir: str, env: dict[str, str], args: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "batchlane",
            "serve",
            "--model-dir",
            model_dir,
            "--port",
            str(self.port),
        ]
        self.log = tempfile.NamedTemporaryFile(prefix="bench-serve-", suffix=".log", delete=False)  # noqa: SIM115
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [*command, *(args or [])], env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait(started)

    def _wait(self, started: float, timeout: float = 300) -> None:
        try:
            wait_for_http(f"{self.url}/ping", timeout=timeout, process=self.process)
        except RuntimeError:
            raise SystemExit(f"batchlane serve exited: {Path(self.log.name).read_text()[-2000:]}") from None
        except TimeoutError:
            raise SystemExit("batchlane serve did not become healthy") from None
        self.startup_s = time.perf_counter() - started

    def peak_rss_mb(self) -> float | None:
        return _vm_hwm_mb(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process, timeout=30)
        self.log.close()
        os.unlink(self.log.name)


def write_inputs(texts: list[str], folder: Path, files: int) -> list[Path]:
    """The corpus as ``files`` JSON Lines files of consecutive documents."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(texts) // files)
    paths = []
    for part in range(files):
        path = folder / f"part-{part:03d}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for text in texts[part * size : (part + 1) * size]:
                handle.write(json.dumps({"text": text}) + "\n")
        paths.append(path)
    return paths


def run_transform_job(
    url: str, inputs: Path, outputs: Path, work: Path, **request_extra: Any
) -> tuple[Any, float]:
    """Submit and run one transform job over ``inputs`` against the server at ``url``; returns (record, seconds)."""
    from batchlane.engines import get_engine
    from batchlane.jobs.store import JobStore
    from batchlane.models import ModelRegistry, ModelSpec

    store = JobStore(work / "jobs.db")
    ModelRegistry(store).create(ModelSpec(name="bench", serve_url=url), exist_ok=True)
    request = {
        "TransformJobName": "bench",
        "ModelName": "bench",
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{inputs}/"}},
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"{outputs}/",
            "Accept": "application/jsonlines",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        **request_extra,
    }
    get_engine("local", store).submit(request)
    started = time.perf_counter()
    record = get_engine("local", store).run("bench")
    seconds = time.perf_counter() - started
    store.close()
    return record, seconds


def run_transform_on_ray(
    model_dir: str, env: dict[str, str], inputs: Path, outputs: Path, work: Path, replicas: int | None
) -> tuple[Any, float, float]:
    """The transform job on the ray engine (docs/ray.md): a local Ray, each replica loading the model itself;
    returns (record, seconds, seconds until the first replica was ready)."""
    from batchlane.engines import get_engine
    from batchlane.jobs.store import JobStore
    from batchlane.models import ModelRegistry, ModelSpec

    store = JobStore(work / "jobs.db")
    ModelRegistry(store).create(ModelSpec(name="bench", model_data=model_dir, environment=env), exist_ok=True)
    request = {
        "TransformJobName": "bench",
        "ModelName": "bench",
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{inputs}/"}},
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"{outputs}/",
            "Accept": "application/jsonlines",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    engine = get_engine("ray", store)
    engine.submit(request, {"engine": "ray", "replicas": replicas, "startup_timeout_s": 600})
    ready: list[float] = []
    started = time.perf_counter()
    record = engine.run(
        "bench",
        on_progress=lambda event, data: ready.append(time.perf_counter()) if event == "ready" else None,
    )
    seconds = time.perf_counter() - started
    store.close()
    return record, seconds, (ready[0] - started) if ready else 0.0


def run_transform(variant: Variant, state: dict[str, Any]) -> dict[str, Any]:
    corpus = _read_jsonl(Path(state["corpus"]))
    if state.get("engine") == "ray":
        return _run_transform_ray(variant, state, corpus)
    with tempfile.TemporaryDirectory(prefix="bench-transform-") as scratch:
        work = Path(scratch)
        paths = write_inputs(corpus, work / "in", TRANSFORM_FILES)
        server = Server(state["model_dir"], variant.env)
        try:
            record, seconds = run_transform_job(server.url, work / "in", work / "out", work)
            server_rss = server.peak_rss_mb()
        finally:
            server.stop()
        if record.status.value != "Completed":
            raise SystemExit(f"transform job ended {record.status.value}: {record.failure_reason}")
        labels = []
        for path in paths:
            with (work / "out" / f"{path.name}.out").open(encoding="utf-8") as handle:
                labels += [json.loads(line)["label"] for line in handle if line.strip()]
    return {
        "labels": labels,
        "seconds": seconds,
        "startup_s": server.startup_s,
        "server_rss_mb": server_rss,
        "peak_rss_mb": peak_rss_mb(),
        "info": {"files": TRANSFORM_FILES, "env": variant.env},
    }


def _run_transform_ray(variant: Variant, state: dict[str, Any], corpus: list[Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-transform-") as scratch:
        work = Path(scratch)
        paths = write_inputs(corpus, work / "in", TRANSFORM_FILES)
        record, seconds, startup = run_transform_on_ray(
            state["model_dir"], dict(variant.env), work / "in", work / "out", work, state.get("replicas")
        )
        if record.status.value != "Completed":
            raise SystemExit(f"transform job ended {record.status.value}: {record.failure_reason}")
        labels = []
        for path in paths:
            with (work / "out" / f"{path.name}.out").open(encoding="utf-8") as handle:
                labels += [json.loads(line)["label"] for line in handle if line.strip()]
    return {
        "labels": labels,
        "seconds": seconds,
        "startup_s": startup,
        "server_rss_mb": 0.0,
        "peak_rss_mb": peak_rss_mb(),
        "info": {
            "files": TRANSFORM_FILES,
            "env": variant.env,
            "engine": "ray",
            "replicas": state.get("replicas"),
        },
    }


def matmul_rate(size: int, dtype: Any, device: str = "cpu", seconds: float = 2.0) -> float:
    """The best of three ``seconds``-long runs of a ``size``² matmul, in FLOP/s (GPU work is synchronised)."""
    import torch

    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    sync()
    best = 0.0
    for _ in range(3):
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            a @ b
            runs += 1
        sync()
        best = max(best, 2 * size**3 * runs / (time.perf_counter() - started))
    return best


def int8_matmul_rate(size: int, seconds: float = 2.0) -> float:
    """The best of three ``seconds``-long runs of a ``size``² int8 × int8 → int32 matmul (``torch._int_mm``), in OP/s."""
    import torch

    a = torch.randint(-128, 127, (size, size), dtype=torch.int8)
    b = torch.randint(-128, 127, (size, size), dtype=torch.int8)
    torch._int_mm(a, b)
    best = 0.0
    for _ in range(3):
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            torch._int_mm(a, b)
            runs += 1
        best = max(best, 2 * size**3 * runs / (time.perf_counter() - started))
    return best


def run_roofline(seconds: float = 2.0, size: int = 2048) -> dict[str, float]:
    """Best dense matmul rate (GFLOP/s; GOP/s for int8) in fp32, bf16 and int8 with torch's default threads."""
    import torch

    from batchlane.serving import precision

    hardware = precision.detect()
    precision.configure_threads(precision.default_threads(hardware))
    # Without bf16 (or int8 dot-product) instructions torch emulates the type at well under 1 GFLOP/s, where a
    # single 2048² call takes a minute: a small matrix measures the same (tiny) rate in seconds.
    bf16_size = size if (hardware.amx_bf16 or hardware.avx512_bf16) else 256
    int8_size = size // 2 if (hardware.avx512_vnni or "amx_int8" in hardware.cpu_flags) else 256
    rates = {
        name: round(matmul_rate(n, dtype, seconds=seconds) / 1e9, 1)
        for name, dtype, n in (("fp32", torch.float32, size), ("bf16", torch.bfloat16, bf16_size))
    }
    try:
        rates["int8"] = round(int8_matmul_rate(int8_size, seconds=seconds) / 1e9, 1)
    except RuntimeError:  # a torch build without a CPU int8 matmul
        rates["int8"] = float("nan")
    return rates


def prepare_openvino(model_dir: str) -> dict[str, Any]:
    """Convert the model (fp32 IR) and quantise it (NNCF int8, calibrated) into the cache, untimed; records how long
    a warm start takes (model load with the cached IR)."""
    from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier
    from batchlane.settings import ServeSettings

    result: dict[str, Any] = {}
    for quantize in ("", "int8"):
        env = {**os.environ, "BATCHLANE_RUNTIME": "openvino", "BATCHLANE_QUANTIZE": quantize}
        options = ClassifierOptions.from_settings(ServeSettings.from_env(env))
        started = time.perf_counter()
        SequenceClassifier.load(model_dir, options)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        classifier = SequenceClassifier.load(model_dir, options)
        result[quantize or "fp32"] = {
            "path": str(classifier.model.path),
            "convert_s": round(cold, 1),
            "warm_load_s": round(time.perf_counter() - started, 1),
        }
    return result


def prepare_onnx(model_dir: str) -> dict[str, Any]:
    """Build the fp32, static int8 and dynamic int8 ONNX graphs into the cache, so the timed variants only load
    them."""
    from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier
    from batchlane.settings import ServeSettings

    paths = {}
    for name, quantize, extra in (
        ("fp32", "", {}),
        ("int8", "int8", {}),
        ("int8-dynamic", "int8", NO_CALIBRATION),
    ):
        env = {**os.environ, "BATCHLANE_RUNTIME": "onnx", "BATCHLANE_QUANTIZE": quantize, **extra}
        classifier = SequenceClassifier.load(
            model_dir, ClassifierOptions.from_settings(ServeSettings.from_env(env))
        )
        paths[name] = str(classifier.model.path)
    return paths
