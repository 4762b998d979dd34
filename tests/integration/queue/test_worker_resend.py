"""The seed's message with no settings, and re-sending after a configuration failure (docs/queue.md).

Real components: the embedded SQLite queue (real clock: the re-send rule compares send and end times) or moto's SQS,
a real job store, real `batchlane serve` processes. The model is the seed's kind of handler: only ``model_fn`` and
``predict_fn``, so batchlane's default ``input_fn``/``output_fn`` decode the request by its Content-Type (none: 415)
and answer in the Accept type.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from batchlane import settings
from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from batchlane.models import ModelRegistry, ModelSpec
from batchlane.queue.launcher import RequestDefaults, job_name_for_attempt
from batchlane.queue.message import job_name_for, parse_message
from batchlane.queue.sqlite import SqliteQueue
from batchlane.queue.sqs import SqsQueue, ensure_queue
from batchlane.queue.worker import Action, Worker
from tests.integration.queue.worker_support import make_inputs, seed_body

# Each test starts a `batchlane serve` process or loads a real model: `make test-fast` skips them.
pytestmark = pytest.mark.slow

SEED_STYLE_INFERENCE_PY = """\
def model_fn(model_dir):
    return "upper"


def predict_fn(lines, model):
    return [line.upper() for line in lines]
"""
# What the worker sent before the seed's defaults existed: nothing for the fields a seed message leaves out.
NO_DEFAULTS = RequestDefaults(**dict.fromkeys(RequestDefaults.__dataclass_fields__))


def results(output: str) -> list[str]:
    """The records' results in an ``.out`` file of JSON answers assembled with Line (one per record or per
    mini-batch, as the model answered: SageMaker writes each answer followed by a newline)."""
    values = [json.loads(line) for line in output.splitlines()]
    return [item for value in values for item in (value if isinstance(value, list) else [value])]


def seed_style_model(folder: Path) -> Path:
    (folder / "code").mkdir(parents=True, exist_ok=True)
    (folder / "code" / "inference.py").write_text(SEED_STYLE_INFERENCE_PY)
    return folder


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[JobStore]:
    jobs = JobStore(tmp_path / "state" / "jobs.db")
    yield jobs
    jobs.close()


@pytest.fixture()
def queue(tmp_path: Path) -> Iterator[SqliteQueue]:
    q = SqliteQueue(tmp_path / "state" / "queue.db", "jobs", visibility_timeout_s=60)
    yield q
    q.close()


def worker(queue, store: JobStore, **options) -> Worker:  # noqa: ANN001 - any Queue
    return Worker(queue, store, **{"wait_s": 0, "retry_backoff_s": 0, "poll_s": 0.1, **options})


def test_seed_message_from_boto3_completes_with_no_settings(
    tmp_path: Path, moto_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server)
    for variable in [name for name in vars(settings) if name.startswith("BATCHLANE_DEFAULT_")]:
        monkeypatch.delenv(getattr(settings, variable), raising=False)
    env = {"AWS_ENDPOINT_URL_SQS": moto_server}
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    ensure_queue(name, visibility_timeout=60, max_receive_count=5, env=env)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.put_object(Bucket=s3_bucket, Key="in/part-1.txt", Body=b"alpha\nbeta\n")
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    body = seed_body(f"s3://{s3_bucket}/in/", f"s3://{s3_bucket}/out/")  # the four fields, no model_name
    sqs.send_message(QueueUrl=url, MessageBody=body)
    store = JobStore(tmp_path / "jobs.db")
    # The documented default model name; the worker gets no --model, no defaults, nothing else.
    ModelRegistry(store).create(
        ModelSpec(name=settings.DEFAULT_MODEL_NAME, model_data=str(seed_style_model(tmp_path / "model")))
    )
    queue = SqsQueue(url, env=env)
    try:
        stats = worker(queue, store, defaults=RequestDefaults.from_env(), wait_s=1).work(burst=True)

        [outcome] = stats.outcomes
        assert (outcome.action, outcome.job_status) == (Action.DONE, "Completed"), outcome.reason
        job = store.get_job(job_name_for(body))
        assert job.request["ModelName"] == "default"
        assert job.request["TransformInput"]["ContentType"] == "text/plain"
        assert job.request["TransformInput"]["SplitType"] == "Line"
        assert job.request["TransformOutput"]["Accept"] == "application/json"
        assert job.request["TransformOutput"]["AssembleWith"] == "Line"
        assert (job.request["BatchStrategy"], job.request["MaxPayloadInMB"]) == ("MultiRecord", 6)
        output = s3.get_object(Bucket=s3_bucket, Key="out/part-1.txt.out")["Body"].read().decode()
        assert results(output) == ["ALPHA", "BETA"]
    finally:
        store.close()
        queue.close()


def test_environment_and_message_fields_override_the_seed_defaults(
    tmp_path: Path, queue: SqliteQueue, store: JobStore
) -> None:
    ModelRegistry(store).create(ModelSpec(name="default", model_data=str(seed_style_model(tmp_path / "m"))))
    inputs = make_inputs(tmp_path / "in")
    body = seed_body(f"{inputs}/", f"{tmp_path}/out/", accept="application/jsonlines")
    queue.send(body)
    defaults = RequestDefaults.from_env(
        {"BATCHLANE_DEFAULT_STRATEGY": "SingleRecord", "BATCHLANE_DEFAULT_MAX_PAYLOAD_MB": "1"}
    )

    [outcome] = worker(queue, store, defaults=defaults).work(burst=True).outcomes

    assert outcome.job_status == "Completed", outcome.reason
    request = store.get_job(outcome.job_name).request
    assert (request["BatchStrategy"], request["MaxPayloadInMB"]) == ("SingleRecord", 1)  # the environment's
    assert request["TransformOutput"]["Accept"] == "application/jsonlines"  # the message's
    assert request["TransformInput"]["ContentType"] == "text/plain"  # the seed's
    assert results((tmp_path / "out" / "part-1.csv.out").read_text()) == ["ALPHA", "BETA"]
    with pytest.raises(
        Exception, match="BATCHLANE_DEFAULT_MAX_PAYLOAD_MB must be an integer 0-100, got 'six'"
    ):
        RequestDefaults.from_env({"BATCHLANE_DEFAULT_MAX_PAYLOAD_MB": "six"})


def test_a_message_whose_model_was_missing_succeeds_when_resent_after_the_model_is_created(
    tmp_path: Path, queue: SqliteQueue, store: JobStore
) -> None:
    inputs = make_inputs(tmp_path / "in")
    named = seed_body(f"{inputs}/", f"{tmp_path}/out-named/", model_name="later")
    unnamed = seed_body(f"{inputs}/", f"{tmp_path}/out-default/")  # runs the worker's default model
    queue.send(named)
    queue.send(unnamed)

    stats = worker(queue, store).work(burst=True)

    assert stats.actions == {"dead_lettered": 2}
    reasons = sorted(letter.reason for letter in queue.list_dead_letters())
    assert "model later does not exist; create it first (batchlane models create later" in reasons[0]
    assert reasons[1].startswith(
        "the message has no model_name and the worker's default model default does not exist: create it "
        "(batchlane models create default --model-data DIR)"
    )

    model_dir = seed_style_model(tmp_path / "model")
    for name in ("later", "default"):
        ModelRegistry(store).create(ModelSpec(name=name, model_data=str(model_dir)))
    queue.send(named)
    queue.send(unnamed)
    stats = worker(queue, store).work(burst=True)

    assert sorted((o.action, o.job_status) for o in stats.outcomes) == [(Action.DONE, "Completed")] * 2
    for body, out in ((named, "out-named"), (unnamed, "out-default")):
        assert store.get_job(job_name_for(body)).status is JobStatus.COMPLETED
        assert results((tmp_path / out / "part-1.csv.out").read_text()) == ["ALPHA", "BETA"]

    # Re-sent after Completed: still one job each, not run again.
    queue.send(named)
    queue.send(unnamed)
    stats = worker(queue, store).work(burst=True)
    assert {(o.action, o.job_name) for o in stats.outcomes} == {
        (Action.DONE, job_name_for(named)),
        (Action.DONE, job_name_for(unnamed)),
    }
    jobs = store.list_jobs(max_results=100)[0]
    assert len(jobs) == 2 and {job.attempts for job in jobs} == {1}


def test_a_job_that_failed_for_its_configuration_runs_again_when_the_message_is_resent(
    tmp_path: Path, queue: SqliteQueue, store: JobStore
) -> None:
    ModelRegistry(store).create(ModelSpec(name="default", model_data=str(seed_style_model(tmp_path / "m"))))
    body = seed_body(f"{make_inputs(tmp_path / 'in')}/", f"{tmp_path}/out/")
    queue.send(body)
    queue.send(body)  # a duplicate sent before the job failed: it must find the job, not run it again
    first = job_name_for(body)

    # A worker configured as before the seed's defaults existed: the request has no ContentType.
    stats = worker(queue, store, defaults=NO_DEFAULTS).work(burst=True)

    assert [(o.action, o.job_name, o.job_status) for o in stats.outcomes] == [
        (Action.DONE, first, "Failed")
    ] * 2
    assert "the request has no Content-Type" in store.get_job(first).failure_reason

    # The operator fixes the configuration and sends the same message again: a new attempt, not a duplicate.
    queue.send(body)
    [outcome] = worker(queue, store).work(burst=True).outcomes

    second = job_name_for_attempt(parse_message(body), 1)
    assert (outcome.action, outcome.job_name, outcome.job_status) == (Action.DONE, second, "Completed")
    assert second == f"{first}-r1"
    assert results((tmp_path / "out" / "part-1.csv.out").read_text()) == ["ALPHA", "BETA"]
    assert store.get_job(first).status is JobStatus.FAILED  # its record and reason are kept

    # And once that attempt Completed, sending the message again finds it.
    queue.send(body)
    [again] = worker(queue, store).work(burst=True).outcomes
    assert (again.job_name, again.job_status) == (second, "Completed")
    assert len(store.list_jobs(max_results=100)[0]) == 2
    assert queue.attributes()["visible"] == queue.attributes()["dead_letters"] == 0
