"""Whether line 1 of a CSV file looks like a header (``csv.Sniffer().has_header``'s test, comma-delimited)."""

from __future__ import annotations

import pytest

from batchlane.transform.csv_header import looks_like_header


@pytest.mark.parametrize(
    ("text", "header"),
    [
        (b"id,text\n1,a\n2,b", True),
        (b"feature1,feature2\n0.5,0.7\n0.1,0.2", True),
        (b"\xef\xbb\xbfid,f1\n1,0.5\n2,0.7", True),  # a BOM does not hide it
        (b"x\n1\n2", True),  # one column: the sniffer's own delimiter guess would fail here
        (b"1,2\n3,4\n5,6", False),
        (b"hello world,foo\nbar,baz", False),
        (b"id,text", False),  # one line: nothing to compare with
        (b"", False),
    ],
)
def test_looks_like_header(text: bytes, header: bool) -> None:
    assert looks_like_header(text.split(b"\n") if text else []) is header
