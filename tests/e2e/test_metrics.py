"""`/metrics` of real processes, parsed with prometheus_client's own parser: `batchlane serve` (with data capture on),
`batchlane server` (a job sent through its SQS API) and `batchlane worker --metrics-port`."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from batchlane.queue.sqlite import SqliteQueue
from batchlane.testing import free_port, stop_process, wait_for_http
from tests.e2e.metrics_support import scrape, value
from tests.integration.queue.worker_support import make_inputs, make_model, release, seed_body, wait_until
from tests.servers import aws_client, clean_env, control_plane_server

pytestmark = [pytest.mark.slow]

KEY, SECRET = "AKIDMETRICSE2E", "metrics-e2e-secret"
CSV_DEFAULTS = {
    "BATCHLANE_DEFAULT_CONTENT_TYPE": "text/csv",
    "BATCHLANE_DEFAULT_SPLIT_TYPE": "Line",
    "BATCHLANE_DEFAULT_ACCEPT": "text/csv",
}


@pytest.fixture()
def serve(tmp_path: Path, tiny_bert_dir: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    env = clean_env(
        OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", BATCHLANE_HOME=str(tmp_path)
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "batchlane", "serve", "--model-dir", str(tiny_bert_dir), "--port", str(port),
         "--host", "127.0.0.1", "--capture", str(tmp_path / "capture"), "--capture-name", "tickets/AllTraffic"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "serve.log", "wb"),  # noqa: SIM115 - closed with the process
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ping", timeout=120)
        yield url, process
    finally:
        stop_process(process)


def test_serve_metrics_move_with_requests_and_capture_parses(serve, tmp_path: Path) -> None:
    url, process = serve
    before = scrape(f"{url}/metrics")
    assert value(before, "batchlane_serve_model_ready") == 1
    assert value(before, "batchlane_serve_model_load_seconds") > 0

    texts = ["my card was charged twice", "refund please", "the app keeps crashing"]
    csv_body = "".join(t + "\n" for t in texts).encode()
    ok = httpx.post(f"{url}/invocations", content=csv_body, headers={"Content-Type": "text/csv"}, timeout=30)
    assert ok.status_code == 200
    plain = httpx.post(
        f"{url}/invocations",
        content=b"someone used my account",
        headers={"Content-Type": "text/plain", "X-Amzn-SageMaker-Inference-Id": "ticket-42"},
        timeout=30,
    )
    assert plain.status_code == 200
    bad = httpx.post(
        f"{url}/invocations", content=b"{", headers={"Content-Type": "application/json"}, timeout=30
    )
    assert bad.status_code == 400

    after = scrape(f"{url}/metrics")
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    assert delta("batchlane_serve_requests_total", status="200", content_type="text/csv") == 1
    assert delta("batchlane_serve_requests_total", status="200", content_type="text/plain") == 1
    assert delta("batchlane_serve_requests_total", status="400", content_type="application/json") == 1
    assert delta("batchlane_serve_request_duration_seconds_count") == 3
    assert delta("batchlane_serve_records_total") == 4
    assert delta("batchlane_serve_batch_records_count") >= 2
    assert delta("batchlane_serve_tokens_total") > 4
    assert delta("batchlane_serve_padded_tokens_total") >= delta("batchlane_serve_tokens_total")
    assert delta("batchlane_serve_batch_padding_ratio_count") >= 2
    assert delta("batchlane_serve_queue_wait_seconds_count", queue="admission") == 3  # the 400 is the model's

    os.kill(process.pid, signal.SIGTERM)  # capture is flushed on shutdown
    process.wait(timeout=30)
    files = sorted((tmp_path / "capture").rglob("*.jsonl"))
    assert files, (tmp_path / "serve.log").read_text()
    hour = files[0].parent.relative_to(tmp_path / "capture").parts
    assert hour[:2] == ("tickets", "AllTraffic") and [len(p) for p in hour[2:]] == [4, 2, 2, 2]
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(records) == 2  # the 400 was not captured
    by_type = {r["captureData"]["endpointInput"]["observedContentType"]: r for r in records}
    csv_record = by_type["text/csv"]
    assert csv_record["captureData"]["endpointInput"] == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": csv_body.decode(),
        "encoding": "CSV",
    }
    output = csv_record["captureData"]["endpointOutput"]
    assert output["mode"] == "OUTPUT" and output["encoding"] == "JSON"
    assert json.loads(output["data"]) == ok.json()
    plain_record = by_type["text/plain"]
    assert plain_record["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert (
        base64.b64decode(plain_record["captureData"]["endpointInput"]["data"]) == b"someone used my account"
    )
    assert plain_record["eventMetadata"]["inferenceId"] == "ticket-42"
    assert plain_record["eventVersion"] == "0"
    assert set(plain_record["eventMetadata"]) == {"eventId", "inferenceId", "inferenceTime"}


def test_server_metrics_count_jobs_records_and_queues(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    env = clean_env(**CSV_DEFAULTS)
    args = ["--workers", "1", "--model", "upper", "--model-data", str(model)]
    with control_plane_server(tmp_path, *args, key=KEY, secret=SECRET, env=env) as url:
        before = scrape(f"{url}/metrics")
        assert value(before, "batchlane_jobs", status="Completed") == 0
        assert ("batchlane_queue_dead_letter_messages", (("queue", "batchlane-jobs"),)) in before

        sqs = aws_client("sqs", url, KEY, SECRET, retries=None)
        queue_url = sqs.get_queue_url(QueueName="batchlane-jobs")["QueueUrl"]
        body = seed_body(f"{make_inputs(tmp_path / 'in', ('a', 'b', 'c'))}/", f"{tmp_path}/out/")
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)

        samples = wait_until(
            lambda: (
                (s := scrape(f"{url}/metrics")) and value(s, "batchlane_jobs", status="Completed") == 1 and s
            ),
            timeout=90,
            what="the job to complete",
        )
        assert value(samples, "batchlane_job_records_total", outcome="done") == 3
        assert value(samples, "batchlane_job_files", state="pending") == 0
        assert value(samples, "batchlane_queue_messages", queue="batchlane-jobs", state="visible") == 0


def test_worker_metrics_port_reports_jobs_files_queue_and_dead_letters(tmp_path: Path) -> None:
    home = tmp_path / "home"
    model = make_model(tmp_path / "model", hold=True)
    queue = SqliteQueue(home / "queue.db", "batchlane-jobs")
    queue.send("not json")  # dead-lettered at once
    queue.send(seed_body(f"{make_inputs(tmp_path / 'in')}/", f"{tmp_path}/out/"))
    port = free_port()
    env = clean_env(BATCHLANE_HOME=str(home), **CSV_DEFAULTS)
    worker = subprocess.Popen(
        [sys.executable, "-m", "batchlane", "worker", "--model", "upper", "--model-data", str(model),
         "--metrics-port", str(port), "--wait", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "worker.log", "wb"),  # noqa: SIM115 - closed with the process
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for_http(url, timeout=60)
        held = wait_until(  # InProgress, its one file planned and held by the model
            lambda: (
                (s := scrape(url))
                and value(s, "batchlane_jobs", status="InProgress") == 1
                and value(s, "batchlane_job_files", state="pending") == 1
                and s
            ),
            timeout=60,
            what="the job to start",
        )
        assert value(held, "batchlane_queue_messages", queue="batchlane-jobs", state="in_flight") == 1
        assert value(held, "batchlane_queue_dead_letter_messages", queue="batchlane-jobs") == 1
        assert value(held, "batchlane_queue_oldest_message_age_seconds", queue="batchlane-jobs") > 0

        release(model)
        done = wait_until(
            lambda: (s := scrape(url)) and value(s, "batchlane_jobs", status="Completed") == 1 and s,
            timeout=60,
            what="the job to complete",
        )
        assert value(done, "batchlane_job_records_total", outcome="done") == 2
        assert value(done, "batchlane_job_files", state="pending") == 0
    finally:
        stop_process(worker)
        queue.close()
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()
