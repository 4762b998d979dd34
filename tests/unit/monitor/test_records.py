"""Reading monitored texts (batchlane.monitor.records): capture records, JSON Lines, CSV, text, folders, gzip."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from batchlane.errors import BadInput, NotFound
from batchlane.monitor.records import capture_texts, read_texts


def capture_line(payload: str, content_type: str = "application/json", encoding: str = "JSON") -> str:
    """One record in SageMaker's data-capture format (docs: "Capture data from real-time endpoint")."""
    data = base64.b64encode(payload.encode()).decode() if encoding == "BASE64" else payload
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": content_type,
                    "mode": "INPUT",
                    "data": data,
                    "encoding": encoding,
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": '[{"label": "Mortgage", "score": 0.9}]',
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {"eventId": "e1", "inferenceTime": "2026-12-06T21:00:00Z"},
            "eventVersion": "0",
        }
    )


@pytest.mark.parametrize(
    ("payload", "content_type", "encoding", "expected"),
    [
        (
            '["Thanks so much for driving me home", "hello"]',
            "application/json",
            "JSON",
            ["Thanks so much for driving me home", "hello"],
        ),
        ('{"inputs": "one text"}', "application/json", "BASE64", ["one text"]),
        ('{"text": "a"}\n{"text": "b"}\n', "application/jsonlines", "BASE64", ["a", "b"]),
        ("first line\nsecond line\n", "text/plain", "BASE64", ["first line", "second line"]),
        ('text\nrow one\n"row, two"\n', "text/csv", "CSV", ["row one", "row, two"]),
    ],
)
def test_capture_texts_decode_the_captured_request(payload, content_type, encoding, expected) -> None:
    assert capture_texts(json.loads(capture_line(payload, content_type, encoding))) == expected


def test_capture_texts_refuse_bad_base64() -> None:
    entry = json.loads(capture_line("x", encoding="BASE64"))
    entry["captureData"]["endpointInput"]["data"] = "not base64!"
    with pytest.raises(BadInput, match="base64"):
        capture_texts(entry)


def test_a_capture_folder_is_read_recursively_and_bad_records_are_skipped(tmp_path: Path) -> None:
    hour = tmp_path / "capture" / "my-endpoint" / "2026" / "12" / "06" / "21"
    hour.mkdir(parents=True)
    (hour / "a.jsonl").write_text(
        capture_line('["one", "two"]') + "\n" + capture_line("{broken", "application/json", "BASE64") + "\n"
    )
    (hour / "b.jsonl").write_text(capture_line("three\n", "text/plain", "BASE64") + "\n")
    texts = read_texts([str(tmp_path / "capture")])
    assert texts.texts == ["one", "two", "three"]
    assert (texts.captured_records, texts.skipped_records) == (3, 1)


def test_plain_files_by_name(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": 1, "text": "from jsonl"}\n\n"a bare string"\n')
    (tmp_path / "b.csv").write_text('id,text\n1,"from, csv"\n2,\n')
    (tmp_path / "c.txt").write_text("from text\n\n")
    with gzip.open(tmp_path / "d.jsonl.gz", "wt") as stream:
        stream.write('{"inputs": "from gzip"}\n')
    texts = read_texts([str(tmp_path) + "/"])
    assert texts.texts == ["from jsonl", "a bare string", "from, csv", "from text", "from gzip"]


def test_text_field_and_content_type_options(tmp_path: Path) -> None:
    (tmp_path / "data.log").write_text('{"body": "custom field"}\n')
    texts = read_texts([str(tmp_path / "data.log")], text_field="body", content_type="application/jsonlines")
    assert texts.texts == ["custom field"]


def test_a_file_named_exactly_is_read_alone(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("mine\n")
    (tmp_path / "a.txt.bak").write_text("not mine\n")
    assert read_texts([str(tmp_path / "a.txt")]).texts == ["mine"]


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"label": "no text"}\n')
    with pytest.raises(BadInput, match=r"bad.jsonl line 2: no string field 'text' or 'inputs'"):
        read_texts([str(tmp_path / "bad.jsonl")])
    with pytest.raises(NotFound, match="no file"):
        read_texts([str(tmp_path / "missing.jsonl")])
