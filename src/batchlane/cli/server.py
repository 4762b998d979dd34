"""`batchlane control-plane`: the control plane that speaks SageMaker's, SQS's and CloudWatch Logs' APIs (thin over
``batchlane.api``). `batchlane server` is its old name, kept as a hidden alias: it was one letter away from
`batchlane serve`, the inference container."""

from __future__ import annotations

from pathlib import Path

import typer

from batchlane.cli.options import DbOption

COMMAND = "control-plane"
OLD_NAME = "server"


def register(app: typer.Typer) -> None:
    def server(
        host: str = typer.Option(
            "127.0.0.1",
            "--host",
            help="Bind address. Loopback by default; anything else exposes the API to the network (keep auth on).",
        ),
        port: int = typer.Option(
            8443, "--port", min=0, max=65535, help="Port; 0 picks a free one (the address is printed)."
        ),
        db: DbOption = None,
        queue: str | None = typer.Option(
            None,
            "--queue",
            "-q",
            envvar="BATCHLANE_QUEUE",
            help="The embedded queue whose file the SQS API serves, created if missing: a name (in "
            "$BATCHLANE_HOME/queue.db) or sqlite:///path.db?queue=NAME. Default: batchlane-jobs.",
        ),
        access_key: str | None = typer.Option(
            None,
            "--access-key",
            envvar="BATCHLANE_ACCESS_KEY_ID",
            help="Access key id clients sign with (their AWS_ACCESS_KEY_ID).",
        ),
        secret_key: str | None = typer.Option(
            None,
            "--secret-key",
            envvar="BATCHLANE_SECRET_ACCESS_KEY",
            help="Its secret (their AWS_SECRET_ACCESS_KEY). Prefer the environment variable or a credentials file: "
            "a flag is visible to other users in the process list.",
            show_default=False,
        ),
        credentials_file: Path | None = typer.Option(
            None,
            "--credentials-file",
            envvar="BATCHLANE_CREDENTIALS_FILE",
            help="INI file with one [section] per key: aws_access_key_id, aws_secret_access_key and optional allow "
            "= service:Action patterns (e.g. sagemaker:Describe*). Used when no --access-key is given.",
        ),
        no_auth: bool = typer.Option(
            False,
            "--no-auth",
            help="Accept unsigned requests (loopback addresses only). Without keys and without this flag the server "
            "refuses to start.",
        ),
        region: str | None = typer.Option(
            None,
            "--region",
            help="Region clients must sign for and ARNs show. Default: $BATCHLANE_REGION, $AWS_REGION, "
            "$AWS_DEFAULT_REGION or us-east-1.",
            show_default=False,
        ),
        allowed_hosts: list[str] = typer.Option(
            [],
            "--allowed-host",
            help="Extra Host header names to accept (repeatable), e.g. a DNS name clients use. Requests naming any "
            "other host are refused (DNS rebinding).",
        ),
        allow_paths: list[Path] = typer.Option(
            [],
            "--allow-path",
            help="Restrict local model data, input and output paths in requests to these folders (repeatable). "
            "Default: any path the server's user can access.",
        ),
        workers: int = typer.Option(
            2,
            "--workers",
            min=0,
            help="Jobs run at once by the server's job workers (each starts a model server).",
        ),
        lease_seconds: float = typer.Option(
            30.0,
            "--lease-seconds",
            min=1,
            max=3600,
            help="Job lease: a job whose server died is resumed this long after; a stop request is noticed within "
            "a third of it.",
        ),
        worker: bool = typer.Option(
            True,
            "--worker/--no-worker",
            help="Also consume the queue: each message starts (and runs) a transform job, like `batchlane worker`.",
        ),
        model: str | None = typer.Option(
            None,
            "--model",
            envvar="BATCHLANE_MODEL_NAME",
            help="Queue worker: default model for messages without model_name.",
        ),
        model_data: str | None = typer.Option(
            None,
            "--model-data",
            envvar="BATCHLANE_MODEL_DATA_URL",
            help="Queue worker: model data of --model, registered if missing.",
        ),
        requeue_failed: int = typer.Option(
            0,
            "--requeue-failed",
            min=0,
            help="Queue worker: re-send a message whose job Failed up to N times.",
        ),
        ssl_certfile: Path | None = typer.Option(
            None, "--ssl-certfile", help="Serve HTTPS with this certificate (PEM); needs --ssl-keyfile."
        ),
        ssl_keyfile: Path | None = typer.Option(
            None, "--ssl-keyfile", help="The certificate's private key (PEM)."
        ),
    ) -> None:
        """Serve SageMaker's (CreateModel, CreateTransformJob, Describe/List/Stop…), SQS's and CloudWatch Logs' (job logs) APIs for AWS clients.

        Point boto3 or the aws CLI at it with endpoint_url / --endpoint-url and the configured key. Requests must be signed (SigV4); jobs run on the server's own workers.
        """  # noqa: E501 - one line per paragraph, or --help breaks it mid-sentence
        import os

        from batchlane import settings
        from batchlane.api.config import ServerConfig, load_keys
        from batchlane.api.server import run_server
        from batchlane.errors import ValidationError
        from batchlane.models import ModelSpec

        env = dict(os.environ)
        keys = () if no_auth else load_keys(access_key, secret_key, credentials_file, env)
        if model_data and not model:
            raise ValidationError(
                "--model-data needs --model NAME (the name to register it under)", field="--model"
            )
        worker_model: str | ModelSpec | None = model
        if model and model_data:
            worker_model = ModelSpec.parse({"name": model, "model_data": model_data})
        region = (
            region
            or env.get(settings.BATCHLANE_REGION)
            or env.get(settings.AWS_REGION)
            or env.get(settings.AWS_DEFAULT_REGION)
            or "us-east-1"
        )
        config = ServerConfig(
            db=db or settings.default_db_path(env),
            queue=queue,
            host=host,
            port=port,
            keys=keys,
            auth=not no_auth,
            region=region,
            account=env.get(settings.BATCHLANE_ACCOUNT_ID) or "000000000000",
            allowed_hosts=tuple(allowed_hosts),
            allowed_paths=tuple(allow_paths),
            workers=workers,
            lease_s=lease_seconds,
            queue_worker=worker,
            worker_model=worker_model,
            requeue_failed=requeue_failed,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            env=env,
        )
        run_server(
            config, on_ready=lambda url: typer.echo(f"batchlane {COMMAND} listening on {url}", err=True)
        )

    app.command(COMMAND)(server)
    app.command(
        OLD_NAME,
        hidden=True,
        help=f"The old name of `batchlane {COMMAND}` (same options); use `batchlane {COMMAND}`.",
    )(server)
