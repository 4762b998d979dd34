"""`batchlane queue …` as a user runs it: a real process, a real SQLite file or moto's SQS, one-line errors."""

from __future__ import annotations

import json
import os
import uuid
from functools import partial
from pathlib import Path

import pytest

from batchlane.queue import open_queue
from batchlane.queue.message import job_name_for, parse_message
from tests.models import MODULE_CLI, run_cli

run = partial(run_cli, timeout=60, command=MODULE_CLI)  # `python -m batchlane`


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHLANE_", "AWS_ENDPOINT_URL"))}
    values["BATCHLANE_HOME"] = str(tmp_path / "home")
    return values


@pytest.fixture()
def input_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "in"
    folder.mkdir(parents=True)
    (folder / "part-0001.jsonl").write_text('{"text": "hello"}\n')
    return folder


def test_send_then_dead_letter_list_and_redrive_on_the_embedded_queue(
    tmp_path: Path, env: dict[str, str], input_dir: Path
) -> None:
    sent = run(
        ["queue", "send", "--input", "data/in", "--output", "data/out/", "--split-type", "Line", "--json"],
        env,
        cwd=tmp_path,
    )
    assert sent.returncode == 0, sent.stderr
    result = json.loads(sent.stdout)
    assert result["queue"].endswith("/home/queue.db?queue=batchlane-jobs")

    queue = open_queue(None, env)
    [message] = queue.receive()
    request = parse_message(message.body)
    assert request.input_path == str(input_dir)  # relative paths are resolved before sending
    assert request.output_path == str(tmp_path / "data" / "out") + "/"
    assert (request.instance_type, request.instance_count, request.split_type) == ("local", 1, "Line")
    assert job_name_for(request) == result["job_name"] and message.message_id == result["message_id"]
    queue.dead_letter(message, "invalid message: model_name: no such model")

    listed = run(["queue", "dlq", "list"], env)
    assert listed.returncode == 0, listed.stderr
    assert message.message_id in listed.stdout and "attempts=1" in listed.stdout
    assert "reason: invalid message: model_name: no such model" in listed.stdout
    [as_json] = [
        json.loads(line) for line in run(["queue", "dlq", "list", "--json"], env).stdout.splitlines()
    ]
    assert as_json["reason"] == "invalid message: model_name: no such model" and as_json["attempts"] == 1

    redriven = run(["queue", "dlq", "redrive", "--message-id", message.message_id], env)
    assert redriven.returncode == 0, redriven.stderr
    assert "redrove 1 message(s)" in redriven.stdout
    stats = json.loads(run(["queue", "stats", "--json"], env).stdout)
    assert (stats["visible"], stats["dead_letters"], stats["max_receive_count"]) == (1, 0, 5)
    [again] = queue.receive()
    assert again.message_id == message.message_id and again.receive_count == 1


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--input", "{missing}", "--output", "{out}"], "no input objects"),
        (
            ["--input", "{input}", "--output", "{out}", "--instance-count", "0"],
            "instance_count: must be between",
        ),
        (["--input", "{input}", "--output", "{input}/results"], "output_path: "),
        (
            ["--input", "http://169.254.169.254/x", "--output", "{out}"],
            "input_path: unsupported scheme 'http'",
        ),
        (["--input", "{input}", "--output", "{out}", "--split-type", "Lines"], "split_type: "),
        (["--input", "{input}", "--output", "{out}", "--job-name", "../etc"], "job_name: "),
    ],
)
def test_send_refuses_bad_requests_with_one_line_errors(
    tmp_path: Path, env: dict[str, str], input_dir: Path, extra: list[str], reason: str
) -> None:
    paths = {"missing": str(tmp_path / "nope"), "out": str(tmp_path / "out"), "input": str(input_dir)}
    result = run(["queue", "send", *[arg.format(**paths) for arg in extra]], env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and reason in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "queue.db").exists()  # nothing was sent (the queue was never opened)


def test_redrive_needs_a_choice(env: dict[str, str]) -> None:
    result = run(["queue", "dlq", "redrive"], env)
    assert result.returncode == 2 and "choose either --all or one or more --message-id" in result.stderr


def test_every_queue_command_and_option_has_help() -> None:
    import typer

    from batchlane.cli.queue import queue_app

    group = typer.main.get_group(queue_app)
    commands = {name: command for name, command in group.commands.items()}
    dlq = commands.pop("dlq")
    commands.update({f"dlq {name}": command for name, command in dlq.commands.items()})
    assert set(commands) == {"send", "stats", "create", "purge", "dlq list", "dlq redrive"}
    for name, command in commands.items():
        assert command.help, name
        for param in command.params:
            assert getattr(param, "help", None), f"{name} {param.name}"


def test_cli_against_sqs_on_moto(
    moto_server: str, aws_env: dict[str, str], env: dict[str, str], input_dir: Path
) -> None:
    env = {**env, **aws_env, "AWS_ENDPOINT_URL_SQS": moto_server}
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = run(["queue", "create", "--queue", f"sqs://{name}", "--max-receive-count", "3"], env)
    assert created.returncode == 0, created.stderr
    assert f"dead-letter queue {name}-dlq" in created.stdout
    sent = run(
        ["queue", "send", "--queue", f"sqs://{name}", "--input", str(input_dir), "--output", "/tmp/o"], env
    )
    assert sent.returncode == 0, sent.stderr
    stats = json.loads(run(["queue", "stats", "--queue", f"sqs://{name}", "--json"], env).stdout)
    assert (stats["visible"], stats["max_receive_count"], stats["dead_letter_queue"]) == (1, 3, f"{name}-dlq")

    queue = open_queue(f"sqs://{name}", env)
    [message] = queue.receive()
    queue.dead_letter(message, "permanent: bad model")
    listed = run(["queue", "dlq", "list", "--queue", f"sqs://{name}"], env)
    assert "reason: permanent: bad model" in listed.stdout and "attempts=1" in listed.stdout
    redriven = run(["queue", "dlq", "redrive", "--all", "--queue", f"sqs://{name}"], env)
    assert "redrove 1 message(s)" in redriven.stdout
    [again] = queue.receive()
    assert again.body == message.body and again.receive_count == 1
    missing = run(["queue", "stats", "--queue", "sqs://no-such-queue"], env)
    assert missing.returncode == 1 and "batchlane queue create --queue sqs://no-such-queue" in missing.stderr
