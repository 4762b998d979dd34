"""The one URI grammar (storage.uri): what each spelling parses to, its canonical forms, the overlap rule and the
CLI's argument resolution; plus the name rules of aws_names and the spec differ."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlane import aws_names
from batchlane.errors import ValidationError
from batchlane.spec_diff import differences
from batchlane.storage import uri


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("s3://bucket/a/b", ("s3", "bucket", "a/b")),
        ("S3://bucket/a//b%20c", ("s3", "bucket", "a//b%20c")),  # S3 keys are literal
        ("https://bucket.s3.us-east-1.amazonaws.com/a/b%20c", ("s3", "bucket", "a/b c")),
        ("https://bucket.s3.amazonaws.com/a", ("s3", "bucket", "a")),
        ("https://s3.eu-west-1.amazonaws.com/bucket/a/", ("s3", "bucket", "a/")),
        ("file:///data/in/", ("file", "", "/data/in/")),
        ("file://localhost/data/a%20b", ("file", "", "/data/a b")),
        ("/data//in/./x", ("file", "", "/data/in/x")),
    ],
)
def test_accepted_spellings(value: str, parsed: tuple[str, str, str]) -> None:
    assert uri.parse(value) == parsed
    assert uri.problem(value) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("data/in", "is a relative path"),
        ("./in/", "is a relative path"),
        ("https://example.com/in", "https URLs must be S3 object URLs"),
        ("http://bucket.s3.amazonaws.com/in", "unsupported scheme 'http'"),
        ("ftp://host/x", "unsupported scheme 'ftp'"),
        ("s3://A_B/x", "not a valid S3 bucket name"),
        ("https://s3.amazonaws.com/Bad_Bucket/x", "not a valid S3 bucket name"),
        ("s3://bucket/a/%2E%2E/b", "'..' path segments"),
        ("/data/../etc", "'..' path segments"),
        ("file://host/x", "must not name a host"),
        ("/a\nb", "control characters"),
        ("", "must not be empty"),
        ("s3://bucket/" + "k" * 1100, "at most 1024 characters"),
    ],
)
def test_refused_spellings_name_the_field(value: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason) as caught:
        uri.parse(value, field="S3Uri")
    assert caught.value.field == "S3Uri" and str(caught.value).startswith("S3Uri: ")


def test_a_base_folder_resolves_relative_paths(tmp_path: Path) -> None:
    assert uri.parse("in/x", base=tmp_path) == ("file", "", f"{tmp_path}/in/x")
    assert uri.split("in/", base=tmp_path) == ("file", f"{tmp_path}/in", "")
    assert uri.split("in/part", base=tmp_path) == ("file", f"{tmp_path}/in", "part")


def test_cli_arguments_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert uri.resolve_argument("data/in/") == f"{tmp_path}/data/in/"
    assert uri.resolve_argument("../x") == f"{tmp_path.parent}/x"
    for unchanged in ("s3://bkt/k", "/abs", "file:///x", "", None):
        assert uri.resolve_argument(unchanged) == unchanged


def test_canonical_forms(tmp_path: Path) -> None:
    https = "https://bucket.s3.us-east-1.amazonaws.com/out/"
    assert uri.canonical_uri(https) == "s3://bucket/out/"
    assert uri.canonical_uri("/data/out") == "/data/out"
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    real = f"file://{tmp_path}/real/"
    assert uri.canonical_location(f"{tmp_path}/link/") == real
    assert uri.canonical_location(f"file://{tmp_path}/real/") == real
    assert uri.canonical_location(https) == uri.canonical_location("s3://bucket/out/")


@pytest.mark.parametrize(
    ("source", "target", "relation"),
    [
        ("s3://bkt/in/", "s3://bkt/in/", "inside"),
        ("s3://bkt/in/", "s3://bkt/in/out/", "inside"),
        ("s3://bkt/in", "s3://bkt/in-results/", "inside"),
        ("s3://bkt/in/part", "s3://bkt/in", "inside"),  # outputs in/part-1.csv.out match the raw prefix
        ("s3://bkt/data/in/", "s3://bkt/data/", "contains"),
        ("s3://bkt/data/in/x", "s3://bkt/data", "contains"),  # outputs data/x... are not listed back
        ("s3://bkt/in/", "s3://bkt/out/", None),
        ("s3://bkt/in/", "s3://other/in/", None),
        ("https://bkt.s3.amazonaws.com/in/", "s3://bkt/in/out", "inside"),
        ("/data/in/", "file:///data/in/out", "inside"),
    ],
)
def test_the_one_overlap_rule(source: str, target: str, relation: str | None) -> None:
    assert uri.prefix_relation(source, target) == relation


def test_names() -> None:
    assert aws_names.job_name_problem("Nightly-Run-7") is None
    assert "job name pattern" in (aws_names.job_name_problem("bad_name") or "")
    assert aws_names.model_name_problem("m" * 64) is not None
    assert aws_names.instance_type_problem("local_gpu") is None
    assert aws_names.instance_type_problem("ml.p4d.24xlarge") is None
    assert aws_names.instance_type_problem("m5.xlarge") is not None
    assert aws_names.canonical_job_name("Nightly-Run-7") == aws_names.canonical_job_name("nightly-run-7")
    assert aws_names.BatchStrategy("SingleRecord").variable == "SINGLE_RECORD"
    assert aws_names.SplitType.LINE == "Line"


def test_spec_differences() -> None:
    old = {"Image": "a:1", "Env": {"A": "1", "B": "2"}, "Nested": {"X": 1}, "AddedByService": True}
    new = {"Image": "a:2", "Env": {"A": "1", "B": "3"}, "Nested": {"X": 2}}
    assert differences(old, new, keys_only={"Env"}) == [
        "Image ('a:1' → 'a:2')",
        "Env (keys B)",
        "Nested.X (1 → 2)",
    ]
    assert differences(old, {"Image": "a:1"}) == []


def test_a_callers_own_path_may_climb(tmp_path: Path) -> None:
    # A command-line argument or library call: '..' is folded as a shell would; in a URI or a request it is refused.
    assert uri.parse("../x", base=tmp_path) == ("file", "", f"{tmp_path.parent}/x")
    assert uri.parse("/data/in/../out", base=tmp_path) == ("file", "", "/data/out")
    with pytest.raises(ValidationError, match="'..' path segments"):
        uri.parse("file:///data/in/../out", base=tmp_path)
    with pytest.raises(ValidationError, match="'..' path segments"):
        uri.parse("/data/in/../out")
