"""`batchlane queue`: send transform requests, inspect a queue, list and redrive dead letters.

Thin wrappers over :mod:`batchlane.queue`; heavy imports (boto3, pydantic models) happen inside the commands.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import typer

from batchlane.storage.uri import resolve_argument

queue_app = typer.Typer(
    help="Queue transform requests (embedded SQLite queue or Amazon SQS) and manage dead letters.",
    no_args_is_help=True,
)
dlq_app = typer.Typer(
    help="Dead letters: list them with their reasons and attempts, move them back.", no_args_is_help=True
)
queue_app.add_typer(dlq_app, name="dlq")

QUEUE_HELP = (
    "Queue: a name (embedded, in $BATCHLANE_HOME/queue.db), sqlite:///path.db?queue=NAME, sqs://NAME or an SQS "
    "queue URL. Default: $BATCHLANE_QUEUE, else batchlane-jobs."
)


def _queue_option() -> Any:
    return typer.Option(None, "--queue", "-q", help=QUEUE_HELP)


def _time(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@queue_app.command("send")
def send(
    input_path: str = typer.Option(
        ..., "--input", "--input-path", help="Input prefix: s3://bucket/prefix, file:// or a local path."
    ),
    output_path: str = typer.Option(
        ..., "--output", "--output-path", help="Output prefix (must not overlap the input prefix)."
    ),
    instance_type: str = typer.Option("local", "--instance-type", help="'local' or an ml.* instance type."),
    instance_count: int = typer.Option(1, "--instance-count", help="Number of instances, 1-100."),
    model_name: str | None = typer.Option(
        None,
        "--model-name",
        help="Model to run (SageMaker ModelName rules). Default: the worker's (--model or BATCHLANE_MODEL_NAME, "
        "else the model named 'default').",
    ),
    job_name: str | None = typer.Option(
        None, "--job-name", help="Transform job name; default: derived from content."
    ),
    idempotency_key: str | None = typer.Option(
        None, "--idempotency-key", help="Key that names the job: the same key never starts a second job."
    ),
    content_type: str | None = typer.Option(
        None,
        "--content-type",
        help="Media type of the input records. Default: the worker's, text/plain (BATCHLANE_DEFAULT_CONTENT_TYPE).",
    ),
    split_type: str | None = typer.Option(
        None,
        "--split-type",
        help="None, Line, RecordIO or TFRecord. Default: the worker's, Line (BATCHLANE_DEFAULT_SPLIT_TYPE).",
    ),
    strategy: str | None = typer.Option(
        None,
        "--strategy",
        help="MultiRecord or SingleRecord. Default: the worker's, MultiRecord (BATCHLANE_DEFAULT_STRATEGY).",
    ),
    accept: str | None = typer.Option(
        None,
        "--accept",
        help="Media type of the output. Default: the worker's, application/json (BATCHLANE_DEFAULT_ACCEPT).",
    ),
    delay: int = typer.Option(0, "--delay", help="Seconds before the message becomes visible (0-900)."),
    skip_input_check: bool = typer.Option(
        False, "--skip-input-check", help="Send without checking that the input prefix has objects."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    queue: str | None = _queue_option(),
    queue_url: str | None = typer.Option(
        None,
        "--queue-url",
        help="An SQS queue URL, e.g. the one `batchlane deploy aws` printed (AWS_ENDPOINT_URL: another endpoint).",
    ),
) -> None:
    """Validate a transform request, check its input exists, and send it to the queue.

    Options left out are left out of the message, as the seed's sender does, and the consumer fills them with its defaults: the seed Lambda's text/plain lines in, application/json out, MultiRecord, 6 MB (docs/queue.md). A message re-sent after its job ended Failed runs again as <job>-r1, -r2, …
    """  # noqa: E501 - one line per paragraph, or --help breaks it mid-sentence
    from batchlane.queue import open_queue
    from batchlane.queue.message import check_input_exists, job_name_for, parse_message

    fields = {
        # Local paths become absolute here, because the worker may run in another directory.
        "input_path": resolve_argument(input_path),
        "output_path": resolve_argument(output_path),
        "instance_type": instance_type,
        "instance_count": instance_count,
        "model_name": model_name,
        "job_name": job_name,
        "idempotency_key": idempotency_key,
        "content_type": content_type,
        "split_type": split_type,
        "strategy": strategy,
        "accept": accept,
    }
    queue = _one_queue(queue, queue_url)
    message = parse_message({k: v for k, v in fields.items() if v is not None})
    if not skip_input_check:
        check_input_exists(message.input_path)
    target = open_queue(queue)
    try:
        message_id = target.send(message.to_body(), delay_s=delay)
    finally:
        target.close()
    name = job_name_for(message)
    if as_json:
        typer.echo(json.dumps({"message_id": message_id, "queue": target.url, "job_name": name}))
    else:
        typer.echo(f"sent message {message_id} to {target.url} (job name {name})")


def _one_queue(queue: str | None, queue_url: str | None) -> str | None:
    """``--queue`` or ``--queue-url`` (an http(s) SQS URL), not both."""
    from batchlane.errors import ValidationError

    if queue_url is None:
        return queue
    if queue is not None:
        raise ValidationError("give either --queue or --queue-url, not both", field="queue_url")
    if not queue_url.startswith(("https://", "http://")):
        raise ValidationError(
            f"--queue-url must be an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>), "
            f"got {queue_url!r}",
            field="queue_url",
        )
    return queue_url


@queue_app.command("stats")
def stats(
    as_json: bool = typer.Option(False, "--json", help="Print the attributes as JSON."),
    queue: str | None = _queue_option(),
) -> None:
    """Show approximate counts (visible, in flight, delayed, dead letters), the oldest age and the settings."""
    from batchlane.queue import open_queue

    target = open_queue(queue)
    try:
        attrs = target.attributes()
    finally:
        target.close()
    if as_json:
        typer.echo(json.dumps(attrs))
        return
    for key, value in attrs.items():
        shown = "-" if value is None else (f"{value:.1f}" if isinstance(value, float) else value)
        typer.echo(f"{key:<22}{shown}")


@queue_app.command("create")
def create(
    visibility_timeout: int = typer.Option(
        900, "--visibility-timeout", help="Lease length in seconds (0-43200)."
    ),
    max_receive_count: int = typer.Option(
        5, "--max-receive-count", help="Receives before dead-lettering (1-1000)."
    ),
    retention: int = typer.Option(
        4 * 86_400,
        "--retention",
        help="Seconds a message may wait before it is dead-lettered (SQS: deleted).",
    ),
    queue: str | None = _queue_option(),
) -> None:
    """Create the queue and its dead-letter queue (<name>-dlq), or update their settings."""
    from batchlane.queue import create_queue

    target = create_queue(
        queue,
        visibility_timeout_s=visibility_timeout,
        max_receive_count=max_receive_count,
        retention_s=retention,
    )
    typer.echo(f"queue {target.url} ready (dead-letter queue {target.attributes()['dead_letter_queue']})")
    target.close()


@queue_app.command("purge")
def purge(
    dead_letters: bool = typer.Option(False, "--dlq", help="Purge the dead-letter queue instead."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    queue: str | None = _queue_option(),
) -> None:
    """Delete every message of the queue (or of its dead-letter queue)."""
    from batchlane.errors import ValidationError
    from batchlane.queue import open_queue

    target = open_queue(queue)
    victim = target.dead_letter_queue if dead_letters else target
    if victim is None:
        raise ValidationError(f"queue {target.name} has no dead-letter queue")
    if not yes:
        typer.confirm(f"delete every message in {victim.name}?", abort=True)
    count = victim.purge()
    typer.echo(f"purged {'?' if count is None else count} message(s) from {victim.name}")
    target.close()


@dlq_app.command("list")
def dlq_list(
    limit: int = typer.Option(100, "--limit", help="Show at most this many dead letters."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per line."),
    queue: str | None = _queue_option(),
) -> None:
    """List dead letters with their reason, attempts and body (oldest first)."""
    from batchlane.queue import open_queue

    target = open_queue(queue)
    try:
        letters = target.list_dead_letters(limit=limit)
    finally:
        target.close()
    if as_json:
        for letter in letters:
            typer.echo(json.dumps(letter.as_dict()))
        return
    if not letters:
        typer.echo(f"no dead letters for {target.name}")
        return
    for letter in letters:
        body = letter.body if len(letter.body) <= 200 else letter.body[:200] + "…"
        typer.echo(
            f"{letter.message_id}  attempts={letter.attempts}  dead_at={_time(letter.dead_at)}  "
            f"sent_at={_time(letter.sent_at)}  redrives={letter.redrive_count}"
        )
        typer.echo(f"    reason: {letter.reason}")
        typer.echo(f"    body:   {body}")


@dlq_app.command("redrive")
def dlq_redrive(
    all_messages: bool = typer.Option(False, "--all", help="Move every dead letter back."),
    message_ids: list[str] = typer.Option(
        None, "--message-id", help="Move this dead letter back (repeatable)."
    ),
    queue: str | None = _queue_option(),
) -> None:
    """Move dead letters back to the queue with a fresh receive count."""
    from batchlane.errors import ValidationError
    from batchlane.queue import open_queue

    if all_messages == bool(message_ids):
        raise ValidationError("choose either --all or one or more --message-id")
    target = open_queue(queue)
    try:
        moved = target.redrive(None if all_messages else message_ids)
    finally:
        target.close()
    typer.echo(f"redrove {len(moved)} message(s) to {target.name}")
    for message_id in moved:
        typer.echo(f"  {message_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(queue_app, name="queue")
