"""Telling whether line 1 of a CSV input looks like a header, to hint at ``--csv-header skip`` in errors.

SageMaker has no header handling: line 1 is a record like any other, so a model either fails on it or answers one
result fewer than the records sent. ``looks_like_header`` applies ``csv.Sniffer().has_header``'s test (line 1
compared with the lines below it, column by column: a column votes "header" when its first cell's type or length
differs from the others') with the delimiter fixed to a comma, since ``text/csv`` is comma-separated and the
sniffer's own delimiter guess fails on one-column files.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from itertools import islice

HINT = "line 1 looks like a CSV header; pass --csv-header skip"
SAMPLE_LINES = 20  # what csv.Sniffer().has_header looks at
MAX_SAMPLE_LINE_BYTES = 4096


class _CommaSniffer(csv.Sniffer):
    def sniff(self, sample: str, delimiters: str | None = None) -> type[csv.Dialect]:
        return csv.excel


def looks_like_header(lines: Iterable[bytes]) -> bool:
    """Whether the first of ``lines`` (a file's first lines, without terminators) looks like a CSV header."""
    sample = [
        line[:MAX_SAMPLE_LINE_BYTES].decode("utf-8-sig", "replace") for line in islice(lines, SAMPLE_LINES)
    ]
    if len(sample) < 2:
        return False
    try:
        return _CommaSniffer().has_header("\n".join(sample) + "\n")
    except csv.Error:
        return False
