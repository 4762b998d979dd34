"""The pure part of the worker: message → CreateTransformJob request, job names per attempt, retry delays."""

from __future__ import annotations

import json

import pytest

from batchlane.aws_names import JOB_NAME_RE
from batchlane.errors import ValidationError
from batchlane.queue.launcher import (
    ATTEMPT_ATTRIBUTE,
    MAX_RESEND_ATTEMPTS,
    JobState,
    RequestDefaults,
    attempt_of,
    build_request,
    job_name_for_attempt,
    resolve_attempt,
    retry_delay_s,
)
from batchlane.queue.message import job_name_for, parse_message
from batchlane.transform.spec import validate_request

SEED = {
    "input_path": "s3://bucket/in/",
    "output_path": "s3://bucket/out/",
    "instance_type": "ml.m5.xlarge",
    "instance_count": 1,
}


NO_DEFAULTS = RequestDefaults(**dict.fromkeys(RequestDefaults.__dataclass_fields__))


def test_seed_message_becomes_the_seed_lambdas_request_by_default() -> None:
    request = build_request(parse_message(json.dumps(SEED)), job_name="j1", model_name="m1")
    assert request == {
        "TransformJobName": "j1",
        "ModelName": "m1",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/in/"}},
            "ContentType": "text/plain",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": "s3://bucket/out/",
            "Accept": "application/json",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
    }
    validate_request(request)


def test_configured_defaults_replace_the_seeds() -> None:
    defaults = RequestDefaults(content_type="text/csv", accept="text/csv", max_payload_mb=2)
    request = build_request(parse_message(SEED), job_name="j1", model_name="m1", defaults=defaults)
    assert request["TransformInput"]["ContentType"] == "text/csv"
    assert request["TransformOutput"] == {
        "S3OutputPath": "s3://bucket/out/",
        "Accept": "text/csv",
        "AssembleWith": "Line",
    }
    assert (request["BatchStrategy"], request["MaxPayloadInMB"]) == ("MultiRecord", 2)
    validate_request(request)


def test_message_fields_win_over_defaults_and_unset_fields_stay_unset() -> None:
    message = parse_message(
        {**SEED, "content_type": "application/jsonlines", "split_type": "None", "strategy": "SingleRecord"}
    )
    request = build_request(message, job_name="j1", model_name="m1")
    assert request["TransformInput"]["ContentType"] == "application/jsonlines"
    assert request["TransformInput"]["SplitType"] == "None"
    # No AssembleWith without Line; the Accept is the default's.
    assert request["TransformOutput"] == {"S3OutputPath": "s3://bucket/out/", "Accept": "application/json"}
    assert request["BatchStrategy"] == "SingleRecord"
    bare = build_request(parse_message(SEED), job_name="j1", model_name="m1", defaults=NO_DEFAULTS)
    assert set(bare["TransformInput"]) == {"DataSource"} and set(bare["TransformOutput"]) == {"S3OutputPath"}
    assert "BatchStrategy" not in bare and "MaxPayloadInMB" not in bare


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
        assert name.endswith(f"-r{k}") and len(name) <= 63 and JOB_NAME_RE.fullmatch(name), name


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
    with pytest.raises(ValidationError, match="default max_payload_mb must be an integer 0-100, got 101"):
        RequestDefaults(max_payload_mb=101)
    env = {
        "BATCHLANE_DEFAULT_CONTENT_TYPE": "text/csv",
        "BATCHLANE_DEFAULT_STRATEGY": " SingleRecord ",
        "BATCHLANE_DEFAULT_ACCEPT": "",  # empty: the default
        "BATCHLANE_DEFAULT_MAX_PAYLOAD_MB": "0",
    }
    assert RequestDefaults.from_env(env) == RequestDefaults(
        content_type="text/csv", strategy="SingleRecord", max_payload_mb=0
    )
    assert RequestDefaults.from_env({}) == RequestDefaults()
    assert RequestDefaults() == RequestDefaults(
        content_type="text/plain",
        split_type="Line",
        accept="application/json",
        strategy="MultiRecord",
        max_payload_mb=6,
    )


SENT = 1_700_000_100.0  # the message's send time; jobs below end before (90) or after (110) it


@pytest.mark.parametrize(
    ("history", "start", "sent_at", "expected"),
    [
        ({}, 0, SENT, 0),                                                    # no job yet: create attempt 0
        ({0: ("InProgress", None)}, 0, SENT, 0),                             # duplicate: join it
        ({0: ("Completed", SENT - 10)}, 0, SENT, 0),                         # re-sent after Completed: same job
        ({0: ("Stopped", SENT - 10)}, 0, SENT, 0),                           # Stopped was somebody's decision
        ({0: ("Failed", SENT - 10)}, 0, SENT, 1),                            # re-sent after the failure
        ({0: ("Failed", SENT + 10)}, 0, SENT, 0),                            # the original, redelivered
        ({0: ("Failed", SENT - 10)}, 0, None, 0),                            # send time unknown: idempotent
        ({0: ("Failed", SENT - 20), 1: ("Failed", SENT - 10)}, 0, SENT, 2),  # second re-send
        ({0: ("Failed", SENT - 20), 1: ("Completed", SENT - 10)}, 0, SENT, 1),
        ({0: ("Failed", SENT - 20), 1: ("InProgress", None)}, 0, SENT, 1),
        ({2: ("Failed", SENT - 10)}, 2, SENT, 3),                            # a re-queued attempt, re-sent
        ({2: ("Failed", SENT + 10)}, 2, SENT, 2),
    ],
)  # fmt: skip
def test_resend_rule_passes_over_only_jobs_that_failed_before_the_message_was_sent(
    history: dict[int, tuple[str, float | None]], start: int, sent_at: float | None, expected: int
) -> None:
    message = parse_message(SEED)
    jobs = {job_name_for_attempt(message, k): JobState(*state) for k, state in history.items()}
    looked_up: list[str] = []

    def lookup(name: str) -> JobState | None:
        looked_up.append(name)
        return jobs.get(name)

    assert resolve_attempt(message, start, sent_at, lookup) == (
        expected,
        job_name_for_attempt(message, expected),
    )
    assert looked_up == [job_name_for_attempt(message, k) for k in range(start, expected + 1)]


def test_resend_rule_accepts_datetimes_and_gives_up_after_many_failures() -> None:
    from datetime import UTC, datetime

    message = parse_message(SEED)
    ended = datetime.fromtimestamp(SENT - 1, UTC)
    assert (
        resolve_attempt(message, 0, SENT, lambda name: None if "-r" in name else JobState("Failed", ended))[0]
        == 1
    )
    with pytest.raises(
        ValidationError, match=f"has failed {MAX_RESEND_ATTEMPTS} times; send the request with a new"
    ):
        resolve_attempt(message, 0, SENT, lambda name: JobState("Failed", SENT - 1))
