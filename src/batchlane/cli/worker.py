"""`batchlane worker`: consume transform requests from a queue and run their jobs (thin over ``queue.worker``)."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import typer

from batchlane.cli.engine_options import EngineOption
from batchlane.cli.options import DbOption, open_job_store
from batchlane.cli.queue import QUEUE_HELP
from batchlane.monitor.scheduler import start_scheduler


def _install_signal_handlers(worker: Any) -> None:
    """First SIGINT/SIGTERM: finish the current message, then exit. Second: abandon it (released for others)."""
    received = 0

    def handle(signum: int, frame: object) -> None:
        nonlocal received
        received += 1
        if received == 1:
            worker.stop()  # only sets an event: safe in a signal handler
            typer.echo("worker: stopping after the current message (signal again to abandon it)", err=True)
        else:
            # Releasing the job writes to SQLite, which must not happen inside this handler's frame.
            threading.Thread(target=worker.stop, kwargs={"abandon": True}, daemon=True).start()
            typer.echo(
                "worker: abandoning the current message; its job can be resumed by any worker", err=True
            )

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker(
        queue: str | None = typer.Option(None, "--queue", "-q", help=QUEUE_HELP),
        db: DbOption = None,
        model: str | None = typer.Option(
            None,
            "--model",
            envvar="BATCHLANE_MODEL_NAME",
            help="Default model for messages without model_name: a registered model's name (with --model-data it "
            "is registered if missing; a different spec under that name dead-letters the message). "
            "Default: the model named 'default'.",
        ),
        model_data: str | None = typer.Option(
            None,
            "--model-data",
            envvar="BATCHLANE_MODEL_DATA_URL",
            help="Model data of the --model model (a model folder, model.tar.gz, file:// or s3:// URI).",
        ),
        burst: bool = typer.Option(
            False, "--burst", help="Exit when the queue has no visible message (instead of waiting for more)."
        ),
        max_messages: int | None = typer.Option(
            None, "--max-messages", min=1, help="Exit after handling this many messages."
        ),
        requeue_failed: int = typer.Option(
            0,
            "--requeue-failed",
            min=0,
            help="Re-send a message whose job ended Failed, up to N more times (each attempt is a new job named "
            "<job>-r<k>). Default 0: a Failed job is final and shown by `batchlane jobs list`.",
        ),
        detach_jobs: bool = typer.Option(
            False,
            "--detach-jobs",
            help="Start each job in a background process and delete the message at once, instead of running the "
            "job here to its end first.",
        ),
        visibility_timeout: int | None = typer.Option(
            None,
            "--visibility-timeout",
            min=0,
            max=43_200,
            help="Lease per message in seconds, renewed by a heartbeat while it is handled. Default: the queue's.",
        ),
        wait: float = typer.Option(
            5.0, "--wait", min=0, max=20, help="Long-polling wait in seconds when the queue is empty (0-20)."
        ),
        retry_backoff: float = typer.Option(
            10.0,
            "--retry-backoff",
            min=0,
            help="After a transient error, hide the message this long, doubling per receive (max 300 s); "
            "0 releases it at once.",
        ),
        no_recover: bool = typer.Option(
            False,
            "--no-recover",
            help="Do not resume jobs whose runner died (default: at start and every 60 s).",
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print what was done as JSON when the worker exits."
        ),
        no_schedules: bool = typer.Option(
            False,
            "--no-schedules",
            help="Do not fire monitoring schedules (default: fired while the worker runs, except with --burst).",
        ),
        metrics_port: int | None = typer.Option(
            None,
            "--metrics-port",
            min=1,
            max=65535,
            help="Serve Prometheus metrics (jobs, records, queue depth, DLQ depth; docs/metrics.md) at "
            "http://HOST:PORT/metrics. Default: off.",
        ),
        metrics_host: str = typer.Option(
            "127.0.0.1",
            "--metrics-host",
            help="Bind address of --metrics-port (0.0.0.0 for a remote Prometheus).",
        ),
        engine: EngineOption = "local",
    ) -> None:
        """Receive transform requests, start their jobs (idempotently), run them, and acknowledge.

        Fields a message leaves out get the seed Lambda's defaults (text/plain lines in, application/json out, MultiRecord, 6 MB), each overridden by its BATCHLANE_DEFAULT_* variable (CONTENT_TYPE, SPLIT_TYPE, ACCEPT, STRATEGY, MAX_PAYLOAD_MB).

        Bad messages go to the dead-letter queue at once with the reason; transient errors are retried until the queue's receive limit. A message re-sent after its job ended Failed runs again as <job>-r1, -r2, … Ctrl-C or SIGTERM finishes the current message and exits; a second one abandons it.
        """  # noqa: E501 - one line per paragraph, or --help breaks it mid-sentence
        from batchlane.errors import ValidationError
        from batchlane.models import ModelSpec
        from batchlane.queue import open_queue
        from batchlane.queue.launcher import RequestDefaults
        from batchlane.queue.worker import Worker

        if model_data and not model:
            raise ValidationError(
                "--model-data needs --model NAME (the name to register it under)", field="--model"
            )
        default_model: str | ModelSpec | None = model
        if model and model_data:
            default_model = ModelSpec.parse({"name": model, "model_data": model_data})
        store = open_job_store(db)
        target = open_queue(queue)
        scheduler = None if burst or no_schedules else start_scheduler(store)
        metrics_server: Any = None
        try:
            runner = Worker(
                target,
                store,
                model=default_model,
                defaults=RequestDefaults.from_env(),
                run_jobs=not detach_jobs,
                requeue_failed=requeue_failed,
                visibility_timeout_s=visibility_timeout,
                wait_s=wait,
                retry_backoff_s=retry_backoff,
                max_retry_backoff_s=max(300.0, retry_backoff),
                recover=not no_recover,
                engine=engine,  # type: ignore[arg-type]  # get_engine names the choices for a bad one
                job_options={"engine": engine} if engine != "local" else None,
            )
            _install_signal_handlers(runner)
            if metrics_port is not None:
                from batchlane import metrics

                metrics.watch(store.path, [target])
                metrics_server = metrics.start_http_server(metrics_port, metrics_host)
                typer.echo(f"worker: metrics at http://{metrics_host}:{metrics_port}/metrics", err=True)
            stats = runner.work(burst=burst, max_messages=max_messages)
        finally:
            if scheduler is not None:
                scheduler.stop()
            if metrics_server is not None:
                metrics_server.shutdown()
            target.close()
            store.close()
        if as_json:
            typer.echo(json.dumps(stats.as_dict()))
            return
        actions = ", ".join(f"{k}={v}" for k, v in sorted(stats.actions.items())) or "nothing to do"
        typer.echo(f"worker: {stats.received} message(s): {actions}; resumed {len(stats.recovered)} job(s)")
