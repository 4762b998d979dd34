"""`batchlane serve`: the SageMaker-compatible inference container (thin over ``batchlane.serving``)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        model_dir: Path = typer.Option(
            None,
            "--model-dir",
            help="Model folder or model.tar.gz (env SM_MODEL_DIR; default /opt/ml/model).",
            show_default=False,
        ),
        host: str = typer.Option(
            None,
            "--host",
            help="Bind address (env BATCHLANE_HOST; default 0.0.0.0 in a container, else 127.0.0.1).",
            show_default=False,
        ),
        port: int = typer.Option(
            None, "--port", help="Port (env SAGEMAKER_BIND_TO_PORT; default 8080).", show_default=False
        ),
        max_length: int = typer.Option(
            None,
            "--max-length",
            help="Truncate texts to this many tokens (env BATCHLANE_MAX_LENGTH; default min(512, model limit)).",
            show_default=False,
        ),
        token_budget: int = typer.Option(
            None,
            "--token-budget",
            help="Padded tokens per forward pass (env BATCHLANE_TOKEN_BUDGET; default 8192 CPU, 65536 GPU).",
            show_default=False,
        ),
        max_batch_size: int = typer.Option(
            None,
            "--max-batch-size",
            help="Most texts per forward pass, also with dynamic batching (env BATCHLANE_MAX_BATCH_SIZE; "
            "default 128 CPU, 1024 GPU).",
            show_default=False,
        ),
        max_batch_delay_ms: float = typer.Option(
            None,
            "--max-batch-delay-ms",
            help="Turn on dynamic batching: merge concurrent requests into shared forward passes, waiting at most "
            "this long for a batch to fill; 0 = take what is queued (env BATCHLANE_MAX_BATCH_DELAY_MS; default off).",
            show_default=False,
        ),
        device: str = typer.Option(
            None,
            "--device",
            help="auto, cpu, cuda or cuda:N (env BATCHLANE_DEVICE; default auto: cuda when present).",
            show_default=False,
        ),
        precision: str = typer.Option(
            None,
            "--precision",
            help="auto, fp32, bf16 or fp16 (env BATCHLANE_PRECISION; auto: bf16 on a GPU and on CPUs with AMX or "
            "AVX512-BF16, else fp32).",
            show_default=False,
        ),
        top_k: int = typer.Option(
            None,
            "--top-k",
            help="Labels returned per record; >1 gives a ranked list (env BATCHLANE_TOP_K; default 1).",
            show_default=False,
        ),
        threads: int = typer.Option(
            None,
            "--threads",
            help="CPU threads for the model (env BATCHLANE_THREADS; default OMP_NUM_THREADS, else the physical cores).",
            show_default=False,
        ),
        runtime: str = typer.Option(
            None,
            "--runtime",
            help="auto, torch, openvino or onnx. auto: OpenVINO on a CPU when installed (converted once and cached; "
            "PyTorch if it cannot convert the model), PyTorch on a GPU. onnx: ONNX Runtime, exported once and "
            "cached (env BATCHLANE_RUNTIME; default auto).",
            show_default=False,
        ),
        quantize: str = typer.Option(
            None,
            "--quantize",
            help="int8: static int8 calibrated on --calibration-data (or the model's calibration.jsonl), with OpenVINO "
            "(auto) or ONNX Runtime (--runtime onnx, or auto without OpenVINO); ONNX Runtime without calibration "
            "texts falls back to dynamic int8 (env BATCHLANE_QUANTIZE; default none).",
            show_default=False,
        ),
        calibration_data: Path = typer.Option(
            None,
            "--calibration-data",
            help="Texts --quantize int8 calibrates on: a few hundred like those you will classify, one per line or "
            "JSON Lines with a 'text' field (env BATCHLANE_CALIBRATION_DATA; default calibration.jsonl in the model "
            "folder, which batchlane train writes).",
            show_default=False,
        ),
        install_requirements: bool = typer.Option(
            None,
            "--install-requirements/--no-install-requirements",
            help="pip-install the model's code/requirements.txt before loading inference.py, into a cache under "
            "BATCHLANE_HOME reused while the file is unchanged (env BATCHLANE_INSTALL_REQUIREMENTS; default on).",
            show_default=False,
        ),
        capture: str = typer.Option(
            None,
            "--capture",
            help="Capture requests and responses in SageMaker's data-capture format (JSON Lines, hourly folders) "
            "to this folder or s3:// URI; capture never blocks or fails a request (env BATCHLANE_CAPTURE_URI; "
            "default off).",
            show_default=False,
        ),
        capture_sample: float = typer.Option(
            None,
            "--capture-sample",
            min=0,
            max=100,
            help="Percentage of requests captured, 0-100 (env BATCHLANE_CAPTURE_SAMPLE; default 100).",
            show_default=False,
        ),
        capture_name: str = typer.Option(
            None,
            "--capture-name",
            help="Folder under the capture destination, like an endpoint's name (env BATCHLANE_CAPTURE_NAME; "
            "default the model folder's name).",
            show_default=False,
        ),
    ) -> None:
        """Serve a model with the SageMaker container contract: GET /ping, GET /execution-parameters, POST /invocations.

        GET /metrics answers Prometheus metrics (docs/metrics.md).
        """
        from batchlane.serving.server import run_server
        from batchlane.settings import ServeSettings

        settings = ServeSettings.from_env(
            model_dir=model_dir,
            host=host,
            port=port,
            max_length=max_length,
            token_budget=token_budget,
            max_batch_size=max_batch_size,
            device=device,
            precision=precision,
            top_k=top_k,
            threads=threads,
            runtime=runtime,
            quantize=quantize,
            calibration_data=calibration_data,
            install_requirements=install_requirements,
            capture_uri=capture,
            capture_sample=capture_sample,
            capture_name=capture_name,
            max_batch_delay_ms=None if max_batch_delay_ms is None else f"{max_batch_delay_ms:g}",
        )
        run_server(settings)
