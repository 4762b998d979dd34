"""How a log file becomes CloudWatch events: timestamps from the line, inherited by untimed lines, never going
backwards; blank lines skipped; a last line still being written left for the next read."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from batchlane.api.log_streams import LogStream, parse_leading_time


def local_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2026-01-02 03:04:05,678 [sagemaker logs]: x", local_ms("2026-01-02T03:04:05.678")),
        ("2026-01-02T03:04:05.5Z message", 1767323045500),
        ("2026-01-02T03:04:05+01:00 message", 1767319445000),
        ("Traceback (most recent call last):", None),
        ("2026-13-40 99:99:99 not a time", None),
    ],
)
def test_leading_timestamps(line: str, expected: int | None) -> None:
    assert parse_leading_time(line) == expected


def test_events_of_a_file_being_written(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    created = local_ms("2026-01-02T03:00:00")
    path.write_text(
        "starting without a timestamp\n"
        "2026-01-02 03:04:05,000 first\n"
        "\n"
        '  File "inference.py", line 3\n'
        "2026-01-02 03:04:01,000 written out of order\n"
        "2026-01-02 03:04:06,000 still being wri",
        encoding="utf-8",
    )
    stream = LogStream("job/batchlane-1-0", "job", path, created)
    events = stream.events()
    assert [e.message for e in events] == [
        "starting without a timestamp",
        "2026-01-02 03:04:05,000 first",
        '  File "inference.py", line 3',
        "2026-01-02 03:04:01,000 written out of order",
    ]
    first = local_ms("2026-01-02T03:04:05")
    assert [e.timestamp for e in events] == [created, first, first, first]
    assert [e.index for e in events] == [0, 1, 2, 3]

    with open(path, "a", encoding="utf-8") as handle:
        handle.write("tten\n")
    grown = stream.events()
    assert grown[:4] == events and grown[4].message == "2026-01-02 03:04:06,000 still being written"
    assert LogStream("gone", "job", tmp_path / "missing.log", created).events() == []
