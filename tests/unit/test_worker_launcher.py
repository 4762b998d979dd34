"""The pure part of the worker: message → CreateTransformJob request, job names per attempt, retry delays."""

from __future__ import annotations

import json

import pytest

from batchlane.errors import ValidationError
from batchlane.queue.launcher import (
    ATTEMPT_ATTRIBUTE,
    RequestDefaults,
    attempt_of,
    build_request,
    job_name_for_attempt,
    retry_delay_s,
)
from batchlane.queue.message import JOB_NAME_RE, job_name_for, parse_message
from batchlane.transform.spec import validate_request

SEED = {
    "input_path": "s3://bucket/in/",
    "output_path": "s3://bucket/out/",
    "instance_type": "ml.m5.xlarge",
    "instance_count": 1,
}


def test_seed_message_becomes_a_valid_request_with_defaults_filling_the_gaps() -> None:
    message = parse_message(json.dumps(SEED))
    defaults = RequestDefaults(content_type="text/csv", split_type="Line", accept="text/csv")
    request = build_request(message, job_name="j1", model_name="m1", defaults=defaults)
    assert request == {
        "TransformJobName": "j1",
        "ModelName": "m1",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/in/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": "s3://bucket/out/", "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
    }
    validate_request(request)


def test_message_fields_win_over_defaults_and_unset_fields_stay_unset() -> None:
    message = parse_message(
        {**SEED, "content_type": "application/jsonlines", "split_type": "None", "strategy": "SingleRecord"}
    )
    request = build_request(
        message, job_name="j1", model_name="m1", defaults=RequestDefaults(split_type="Line")
    )
    assert request["TransformInput"]["ContentType"] == "application/jsonlines"
    assert request["TransformInput"]["SplitType"] == "None"
    assert request["TransformOutput"] == {"S3OutputPath": "s3://bucket/out/"}  # no AssembleWith without Line
    assert request["BatchStrategy"] == "SingleRecord"
    bare = build_request(parse_message(SEED), job_name="j1", model_name="m1")
    assert "ContentType" not in bare["TransformInput"] and "BatchStrategy" not in bare


def test_reordered_keys_build_the_same_request_and_name() -> None:
    reordered = json.dumps(dict(reversed(list(SEED.items()))), indent=2)
    first, second = parse_message(json.dumps(SEED)), parse_message(reordered)
    assert job_name_for_attempt(first) == job_name_for_attempt(second) == job_name_for(first)
    assert build_request(first, job_name="a", model_name="m") == build_request(
        second, job_name="a", model_name="m"
    )


@pytest.mark.parametrize(
    "extra",
    [{}, {"job_name": "x" * 63}, {"job_name": "a" * 60 + "-bc"}, {"idempotency_key": "order 42 / retry"}],
    ids=["content", "longest-name", "hyphen-at-cut", "idempotency-key"],
)
def test_attempt_names_are_deterministic_distinct_and_valid(extra: dict) -> None:
    message = parse_message({**SEED, **extra})
    names = [job_name_for_attempt(message, k) for k in range(12)]
    assert names == [job_name_for_attempt(message, k) for k in range(12)]
    assert len(set(names)) == 12
    assert names[0] == job_name_for(message)
    for k, name in enumerate(names[1:], start=1):
        assert name.endswith(f"-r{k}") and len(name) <= 63 and JOB_NAME_RE.match(name), name


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [(None, 0), ({}, 0), ({ATTEMPT_ATTRIBUTE: "3"}, 3), ({ATTEMPT_ATTRIBUTE: "-1"}, 0),
     ({ATTEMPT_ATTRIBUTE: "two"}, 0), ({ATTEMPT_ATTRIBUTE: "123456"}, 0)],
)  # fmt: skip
def test_attempt_of_reads_only_small_whole_numbers(attributes: dict | None, expected: int) -> None:
    assert attempt_of(attributes) == expected


@pytest.mark.parametrize(
    ("receive_count", "base", "cap", "expected"),
    [(1, 10, 300, 10), (2, 10, 300, 20), (3, 10, 300, 40), (6, 10, 300, 300), (10_000, 10, 300, 300),
     (0, 10, 300, 10), (5, 0, 300, 0), (2, 1.5, 300, 3)],
)  # fmt: skip
def test_retry_delay_doubles_per_receive_and_is_capped(
    receive_count: int, base: float, cap: float, expected: int
) -> None:
    assert retry_delay_s(receive_count, base, cap) == expected


def test_defaults_are_validated_and_read_from_the_environment() -> None:
    with pytest.raises(ValidationError, match="default split_type 'Lines' must be one of"):
        RequestDefaults(split_type="Lines")
    with pytest.raises(ValidationError, match="default content_type 'csv' is not a media type"):
        RequestDefaults(content_type="csv")
    env = {"BATCHLANE_DEFAULT_CONTENT_TYPE": "text/csv", "BATCHLANE_DEFAULT_STRATEGY": " MultiRecord "}
    assert RequestDefaults.from_env(env) == RequestDefaults(content_type="text/csv", strategy="MultiRecord")
    assert RequestDefaults.from_env({}) == RequestDefaults()
