"""The queue message schema: every rejection names its field and reason; job names are deterministic."""

from __future__ import annotations

import json

import pytest

from batchlane.aws_names import JOB_NAME_RE
from batchlane.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    QueueError,
    StaleReceipt,
    StorageError,
    ValidationError,
)
from batchlane.queue.message import (
    TransformMessage,
    canonical_json,
    check_input_exists,
    is_permanent,
    job_name_for,
    parse_message,
    split_path,
)

GOOD = {
    "input_path": "s3://bucket/in/",
    "output_path": "s3://bucket/out/",
    "instance_type": "ml.m5.xlarge",
    "instance_count": 1,
}


def with_(**changes: object) -> dict[str, object]:
    data = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    return data


def test_seed_message_is_accepted() -> None:
    message = parse_message(json.dumps(GOOD))
    assert message == TransformMessage(**GOOD)
    assert json.loads(message.to_body()) == GOOD


def test_every_optional_field_is_accepted() -> None:
    message = parse_message(
        with_(
            input_path="/data/in",
            output_path="file:///data/out/",
            instance_type="local",
            instance_count=100,
            model_name="my-model-2",
            job_name="nightly-2024-01-01",
            idempotency_key="order 42 / retry",
            content_type="text/csv",
            split_type="Line",
            strategy="MultiRecord",
            accept="application/jsonlines; charset=utf-8",
        )
    )
    assert message.split_type == "Line" and message.instance_count == 100


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (with_(instance_count=True), "instance_count", "not a boolean"),
        (with_(output_path="file:///data/in/", input_path="/data/in"), "output_path", "inside input_path"),
        (with_(instance_count=False), "instance_count", "not a boolean"),
        (with_(instance_count=0), "instance_count", "between 1 and 100"),
        (with_(instance_count=101), "instance_count", "between 1 and 100"),
        (with_(instance_count=1.0), "instance_count", "must be an integer"),
        (with_(instance_count="1"), "instance_count", "must be an integer"),
        (with_(instance_count=...), "instance_count", "is required"),
        (with_(colour="blue"), "colour", "unknown field"),
        (with_(input_path="http://169.254.169.254/latest"), "input_path", "http(s) URLs are not fetched"),
        (
            with_(output_path="https://example.com/out"),
            "output_path",
            "http(s) URLs are not fetched",
        ),
        (with_(input_path="s3://bucket/a/../../etc"), "input_path", "'..' path segments"),
        (with_(input_path="s3://bucket/a/%2e%2e/b"), "input_path", "'..' path segments"),
        (with_(input_path="/data/../etc/passwd"), "input_path", "'..' path segments"),
        (with_(input_path=""), "input_path", "must not be empty"),
        (with_(input_path="data/in"), "input_path", "absolute path"),
        (with_(input_path="s3://Bad_Bucket/in"), "input_path", "not a valid S3 bucket"),
        (with_(input_path="s3://bucket/a\x00b"), "input_path", "control characters"),
        (with_(input_path="ftp://host/in"), "input_path", "unsupported scheme"),
        (with_(input_path="file://otherhost/in"), "input_path", "must not name a host"),
        (with_(input_path="s3://bucket/" + "k" * 1020), "input_path", "at most 1024"),
        (with_(input_path=7), "input_path", "must be a string"),
        (with_(output_path="s3://bucket/in/results/"), "output_path", "inside input_path"),
        (
            with_(input_path="s3://bucket/in", output_path="s3://bucket/in-results"),
            "output_path",
            "inside input_path",
        ),
        # Outputs s3://bucket/in/<name>.out match the raw input prefix s3://bucket/in/: read back as inputs.
        (with_(output_path="s3://bucket/in"), "output_path", "inside input_path"),
        (with_(input_path="s3://bucket/out/in/"), "output_path", "contains input_path"),
        (with_(instance_type="m5.xlarge"), "instance_type", "ml.<family>.<size>"),
        (with_(job_name="../../etc"), "job_name", "job name pattern"),
        (with_(job_name="-starts-with-hyphen"), "job_name", "job name pattern"),
        (with_(job_name="a" * 64), "job_name", "job name pattern"),
        (with_(model_name="bad_name"), "model_name", "letters, digits and hyphens"),
        (with_(split_type="Lines"), "split_type", "'None', 'Line', 'RecordIO' or 'TFRecord'"),
        (with_(strategy="Multi"), "strategy", "'MultiRecord' or 'SingleRecord'"),
        (with_(content_type="csv"), "content_type", "media type"),
        (with_(idempotency_key=""), "idempotency_key", "1-256 characters"),
    ],
)
def test_bad_messages_are_rejected_naming_the_field(data: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message(json.dumps(data))
    assert caught.value.field == field
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)
    assert is_permanent(caught.value)


def test_all_problems_are_reported_in_one_line() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message(with_(instance_count=True, colour="blue"))
    text = str(caught.value)
    assert text.startswith("invalid message: ")
    assert "instance_count: must be an integer, not a boolean" in text and "colour: unknown field" in text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[1, 2]", "must be a JSON object, got an array"),
        ('"text"', "must be a JSON object, got a string"),
        ("42", "must be a JSON object, got a number"),
        ("null", "must be a JSON object, got null"),
        ('{"input_path": ', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_non_object_or_broken_bodies_are_rejected(body: str | bytes, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message(body)
    assert reason in str(caught.value) and caught.value.field == "body"


def test_size_limit_is_one_mebibyte() -> None:
    padding = "x" * (1 << 20)
    with pytest.raises(PayloadTooLarge) as caught:
        parse_message(json.dumps(with_(idempotency_key=padding)))
    assert "1048576" in str(caught.value)
    assert is_permanent(caught.value)
    with pytest.raises(PayloadTooLarge):
        parse_message(with_(model_name="m" + "x" * (1 << 20)))


def test_reordered_keys_and_duplicates_give_one_job_name() -> None:
    body = json.dumps(GOOD)
    reordered = json.dumps(dict(reversed(list(GOOD.items()))), indent=2)
    assert body != reordered
    name = job_name_for(body)
    assert name == job_name_for(reordered) == job_name_for(parse_message(body)) == job_name_for(GOOD)
    assert JOB_NAME_RE.fullmatch(name) and name.startswith("bl-in-")
    # Explicit nulls are the defaults: the same request.
    assert job_name_for(with_(model_name=None, split_type=None)) == name
    # A different request is a different job.
    assert job_name_for(with_(instance_count=2)) != name


def test_canonical_json_fills_defaults_and_sorts_keys() -> None:
    text = canonical_json(parse_message(GOOD))
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert '"model_name":null' in text


def test_job_name_and_idempotency_key_take_precedence() -> None:
    assert job_name_for(with_(job_name="nightly-1")) == "nightly-1"
    keyed = job_name_for(with_(idempotency_key="order 42/retry"))
    assert keyed.startswith("bl-order-42-retry-") and JOB_NAME_RE.fullmatch(keyed)
    # The key alone names the job: other fields may differ (a client resending with a changed count).
    assert job_name_for(with_(idempotency_key="order 42/retry", instance_count=3)) == keyed
    weird = job_name_for(with_(idempotency_key="///", input_path="s3://bucket/%%%/"))
    assert JOB_NAME_RE.fullmatch(weird) and len(weird) <= 63


@pytest.mark.parametrize(
    "input_path",
    ["s3://bucket/", "s3://bucket/" + "a" * 900, "/", "/data/x" * 100, "s3://bucket/ünïcødé/ключ"],
)
def test_generated_job_names_always_match_sagemakers_pattern(input_path: str) -> None:
    name = job_name_for(with_(input_path=input_path, output_path="s3://other-bucket/out"))
    assert JOB_NAME_RE.fullmatch(name), name


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (ValidationError("bad"), True),
        (PayloadTooLarge("big"), True),
        (NotFound("no model"), True),
        (Conflict("model exists with another spec"), True),
        (StaleReceipt("lease lost"), False),
        (StorageError("S3 503"), False),
        (QueueError("SQS unreachable"), False),
        (ConnectionError("reset"), False),
        (RuntimeError("unknown"), False),
    ],
)
def test_errors_are_classified_permanent_or_transient(exc: BaseException, permanent: bool) -> None:
    assert is_permanent(exc) is permanent


def test_split_path_outside_pydantic_raises_our_error() -> None:
    assert split_path("s3://bucket/a/b") == ("s3", "bucket", "a/b")
    assert split_path("file:///data/in") == ("file", "", "/data/in")
    assert split_path("https://bucket.s3.us-east-1.amazonaws.com/a/b") == ("s3", "bucket", "a/b")
    with pytest.raises(ValidationError, match="input_path: unsupported scheme 'http'"):
        split_path("http://x/y", "input_path")


def test_input_check_sees_local_prefixes(tmp_path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "part-0001.csv").write_text("a\n")
    (tmp_path / "empty").mkdir()
    assert check_input_exists(str(tmp_path / "in")) == 1
    # A raw prefix, as transform jobs list inputs.
    assert check_input_exists(str(tmp_path / "in" / "part")) == 1
    assert check_input_exists(f"file://{tmp_path}/in/") == 1
    for missing in (tmp_path / "empty", tmp_path / "nope", tmp_path / "in" / "other"):
        with pytest.raises(ValidationError, match="no input objects") as caught:
            check_input_exists(str(missing))
        assert caught.value.field == "input_path"
