"""Data capture's writer on a real temp folder: SageMaker's record shape, hourly files, sampling, and a full queue
that drops and counts instead of blocking."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import pytest

from batchlane import metrics
from batchlane.errors import ValidationError
from batchlane.serving.capture import CaptureConfig, CaptureWriter, encode_payload

HOUR = 1_796_590_800.0  # 2026-12-06T21:00:00Z


def capture_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.jsonl"))


def records(root: Path) -> list[dict]:
    return [json.loads(line) for path in capture_files(root) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("content_type", "body", "encoding", "data"),
    [
        ("text/csv", b"1,2\n", "CSV", "1,2\n"),
        ("application/json; charset=utf-8", b'{"a": 1}', "JSON", '{"a": 1}'),
        ("application/jsonlines", b'{"a": 1}\n', "JSON", '{"a": 1}\n'),
        ("text/plain", b"hello", "BASE64", base64.b64encode(b"hello").decode()),
        ("text/csv", b"\xff\xfe", "BASE64", base64.b64encode(b"\xff\xfe").decode()),
        (None, b"x", "BASE64", "eA=="),
    ],
)
def test_payload_encoding_follows_sagemaker(content_type, body, encoding, data) -> None:
    payload = encode_payload(body, content_type, "INPUT")
    assert payload == {
        "observedContentType": content_type or "",
        "mode": "INPUT",
        "data": data,
        "encoding": encoding,
    }


def test_records_land_in_hourly_folders_in_sagemakers_shape(tmp_path: Path) -> None:
    times = iter([HOUR + 5, HOUR + 3600 + 7, HOUR + 3700, HOUR + 3700])
    config = CaptureConfig(str(tmp_path / "dest"), "my-endpoint/AllTraffic", generate_inference_id=True)
    writer = CaptureWriter(config, clock=lambda: next(times))
    assert writer.capture(b"first", "text/plain", b'{"label": "a"}', "application/json", inference_id="id-1")
    assert writer.capture(b"second", "text/plain", b"x,y", "text/csv")
    writer.close()

    files = capture_files(tmp_path / "dest")
    folders = [f.parent.relative_to(tmp_path / "dest").as_posix() for f in files]
    assert folders == ["my-endpoint/AllTraffic/2026/12/06/21", "my-endpoint/AllTraffic/2026/12/06/22"]
    # <minute>-<second>-<millisecond>-<uuid>.jsonl of the time the file was written
    assert [f.name[:10] for f in files] == ["01-40-000-", "01-40-000-"]
    first, second = records(tmp_path / "dest")
    assert first["eventVersion"] == "0"
    assert first["eventMetadata"]["inferenceId"] == "id-1"
    assert first["eventMetadata"]["inferenceTime"] == "2026-12-06T21:00:05Z"
    assert len(first["eventMetadata"]["eventId"]) == 36
    assert base64.b64decode(first["captureData"]["endpointInput"]["data"]) == b"first"
    assert first["captureData"]["endpointOutput"] == {
        "observedContentType": "application/json",
        "mode": "OUTPUT",
        "data": '{"label": "a"}',
        "encoding": "JSON",
    }
    assert second["eventMetadata"]["inferenceId"] != "id-1"  # generated: GenerateInferenceId
    assert second["captureData"]["endpointOutput"]["encoding"] == "CSV"


def test_sampling_captures_about_the_given_share(tmp_path: Path) -> None:
    draws = iter([0.05, 0.5, 0.24, 0.99] * 25)
    writer = CaptureWriter(CaptureConfig(str(tmp_path), "ep", sample_percent=25), rng=lambda: next(draws))
    taken = [writer.capture(b"x", "text/plain", b"y", "text/plain") for _ in range(100)]
    writer.close()
    assert sum(taken) == 50
    assert len(records(tmp_path)) == 50

    none = CaptureWriter(CaptureConfig(str(tmp_path / "none"), "ep", sample_percent=0))
    assert not none.capture(b"x", "text/plain", b"y", "text/plain")
    none.close()
    assert not (tmp_path / "none").exists() or not capture_files(tmp_path / "none")


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    """The writer is stuck in a slow write; requests keep being answered and the overflow is counted."""
    release = threading.Event()
    config = CaptureConfig(
        str(tmp_path), "ep", max_queue_records=3, flush_interval_s=0.01, max_file_records=1
    )
    writer = CaptureWriter(config)
    real_write = writer.store.write_bytes

    def slow_write(key: str, data: bytes) -> None:
        release.wait(10)
        real_write(key, data)

    writer.store.write_bytes = slow_write  # a destination that stalls (a hung mount, a throttled bucket)
    before = metrics.CAPTURE_DROPPED.labels(reason="queue_full")._value.get()
    assert writer.capture(b"0", "text/plain", b"0", "text/plain")
    time.sleep(0.3)  # the writer took record 0 and is stuck writing it
    started = time.monotonic()
    taken = [writer.capture(b"%d" % i, "text/plain", b"y", "text/plain") for i in range(1, 11)]
    assert time.monotonic() - started < 0.5
    assert taken == [True] * 3 + [False] * 7
    assert writer.dropped == 7
    assert metrics.CAPTURE_DROPPED.labels(reason="queue_full")._value.get() - before == 7
    release.set()
    writer.close()
    assert sorted(base64.b64decode(r["captureData"]["endpointInput"]["data"]) for r in records(tmp_path)) == [
        b"0",
        b"1",
        b"2",
        b"3",
    ]


def test_a_failing_destination_counts_write_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    writer = CaptureWriter(CaptureConfig(str(blocker / "dest"), "ep"))
    assert writer.capture(b"x", "text/plain", b"y", "text/plain")
    writer.close()
    assert writer.dropped == 1 and writer.written == 0


def test_sampling_outside_0_to_100_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="--capture-sample.*0 to 100|0 to 100"):
        CaptureConfig(str(tmp_path), "ep", sample_percent=150)


def test_capture_settings_come_from_the_environment(tmp_path: Path) -> None:
    from batchlane.settings import ServeSettings

    settings = ServeSettings.from_env(
        {
            "BATCHLANE_CAPTURE_URI": str(tmp_path),
            "BATCHLANE_CAPTURE_SAMPLE": "12.5",
            "BATCHLANE_CAPTURE_INFERENCE_ID": "true",
        }
    )
    config = CaptureConfig.from_settings(settings, default_name="my-model")
    assert config == CaptureConfig(str(tmp_path), "my-model", sample_percent=12.5, generate_inference_id=True)
    assert CaptureConfig.from_settings(ServeSettings.from_env({}), default_name="m") is None
    with pytest.raises(ValidationError, match="BATCHLANE_CAPTURE_SAMPLE must be a number, got 'lots'"):
        ServeSettings.from_env({"BATCHLANE_CAPTURE_SAMPLE": "lots"})
