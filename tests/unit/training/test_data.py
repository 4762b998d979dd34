"""The labelled-data loader: RFC 4180 CSV (quoted multi-line fields), JSONL, gzip, and errors that point at the spot."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from batchlane.errors import BadInput, NotFound, ValidationError
from batchlane.training.data import check_labels_known, load_labelled, stratified_split

MULTILINE_CSV = (
    'id,text,label\r\n1,"first line\r\nsecond, with comma\r\nthird ""quoted""",billing\r\n'
    '2,plain text,fraud\r\n3,"one\nmore",billing\r\n'
)


def write(path: Path, content: str, *, gz: bool = False) -> Path:
    if gz:
        with gzip.open(path, "wt", encoding="utf-8", newline="") as stream:
            stream.write(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


@pytest.mark.parametrize("name,gz", [("data.csv", False), ("data.csv.gz", True)])
def test_quoted_multiline_csv(tmp_path: Path, name: str, gz: bool) -> None:
    data = load_labelled(write(tmp_path / name, MULTILINE_CSV, gz=gz))
    assert data.texts == ['first line\r\nsecond, with comma\r\nthird "quoted"', "plain text", "one\nmore"]
    assert data.labels == ["billing", "fraud", "billing"]
    # Each record's first physical line: the header is line 1, record 1 spans lines 2-4.
    assert data.lines == [2, 5, 6]
    assert data.label_set == ["billing", "fraud"]


def test_custom_columns_bom_and_max_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "\ufeffbody,product\nhello,a\nworld,b\nagain,a\n")
    data = load_labelled(path, text_column="body", label_column="product", max_rows=2)
    assert data.texts == ["hello", "world"] and data.labels == ["a", "b"]


@pytest.mark.parametrize("name,gz", [("d.jsonl", False), ("d.jsonl.gz", True)])
def test_jsonl(tmp_path: Path, name: str, gz: bool) -> None:
    lines = [{"text": "a b", "label": "x"}, {"text": "c", "label": 3}, {}, {"text": "d\ne", "label": "x"}]
    content = "\n".join("" if not r else json.dumps(r) for r in lines) + "\n"
    data = load_labelled(write(tmp_path / name, content, gz=gz))
    assert data.texts == ["a b", "c", "d\ne"]
    assert data.labels == ["x", "3", "x"]  # numbers become strings
    assert data.lines == [1, 2, 4]  # the blank line is skipped but counted


def test_real_cfpb_rows_load() -> None:
    path = Path(__file__).parents[3] / "examples" / "data" / "cfpb" / "test.csv.gz"
    data = load_labelled(path, max_rows=50)
    assert len(data) == 50 and len(data.label_set) >= 2
    assert all(text.strip() for text in data.texts)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="nope.csv: no such file"):
        load_labelled(tmp_path / "nope.csv")


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="unknown data format"):
        load_labelled(write(tmp_path / "d.txt", "x"))


def test_missing_csv_column_names_file_line_and_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "body,label\nhello,a\n")
    with pytest.raises(BadInput) as info:
        load_labelled(path)
    message = str(info.value)
    assert str(path) in message and "line 1" in message and "'text'" in message and "'body'" in message


@pytest.mark.parametrize("content", ["", "text,label\n", "text,label\n\n\n"])
def test_empty_dataset(tmp_path: Path, content: str) -> None:
    with pytest.raises(BadInput, match="d.csv: (empty file|no records)"):
        load_labelled(write(tmp_path / "d.csv", content))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n', r"d\.jsonl, line 2: no field 'label'"),
        ("d.csv", 'text,label\na,x\n"multi\nline",\n', r"d\.csv, line 3, column 'label' \(2\): empty label"),
        ("d.csv", "text,label\na,x\nb,y,z\n", r"line 3: expected 2 fields as in the header, found 3"),
        ("d.csv", 'text,label\na,x\n"b"c,y\n', r"d\.csv, line 3: malformed CSV"),
        ("d.jsonl", '{"text": "a", "label": "x"}\n{"text": \n', r"line 2, column 10: invalid JSON"),
        ("d.jsonl", '{"text": null, "label": "x"}\n', r"line 1, column 'text': expected a string"),
    ],
    ids=[
        "missing-jsonl-field",
        "empty-label",
        "field-count",
        "malformed-quoting",
        "invalid-json",
        "null-text",
    ],
)
def test_bad_records_name_the_file_line_and_column(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    with pytest.raises(BadInput, match=message):
        load_labelled(write(tmp_path / name, content))


def test_not_utf8_and_not_gzip(tmp_path: Path) -> None:
    bad = tmp_path / "d.csv"
    bad.write_bytes(b"text,label\n\xff\xfe,x\n")
    with pytest.raises(BadInput, match="not valid UTF-8"):
        load_labelled(bad)
    fake = tmp_path / "d.csv.gz"
    fake.write_bytes(b"text,label\na,b\n")
    with pytest.raises(BadInput, match="not a valid gzip file"):
        load_labelled(fake)


def test_unknown_label_names_record(tmp_path: Path) -> None:
    data = load_labelled(write(tmp_path / "e.csv", "text,label\na,x\nb,zzz\n"))
    with pytest.raises(
        BadInput, match=r"e\.csv, line 3, column 'label': label 'zzz' is not one the model knows"
    ):
        check_labels_known(data, ["x", "y"])


def test_stratified_split_is_deterministic_and_keeps_every_label(tmp_path: Path) -> None:
    rows = "".join(f"t{i},{'abc'[i % 3] if i < 30 else 'a'}\n" for i in range(60)) + "rare,d\n"
    data = load_labelled(write(tmp_path / "d.csv", "text,label\n" + rows))
    train, held = stratified_split(data, 0.2, seed=1)
    again_train, again_held = stratified_split(data, 0.2, seed=1)
    assert held.texts == again_held.texts and train.texts == again_train.texts
    assert len(train) + len(held) == len(data)
    assert not set(train.texts) & set(held.texts)
    assert set(held.labels) == {"a", "b", "c"}  # "d" has one record: it stays in training
    assert "rare" in train.texts
    assert held.source.endswith("(held-out 20%)")
    with pytest.raises(ValidationError, match="eval fraction"):
        stratified_split(data, 1.5, seed=1)
