"""The job lifecycle table and the file checkpoint states (pure)."""

from __future__ import annotations

import itertools

import pytest

from batchlane.errors import Conflict, ValidationError
from batchlane.jobs.state import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    FileState,
    JobStatus,
    can_transition,
    check_file_transition,
    check_job_name,
    check_transition,
)

ALLOWED = {
    ("InProgress", "Completed"),
    ("InProgress", "Failed"),
    ("InProgress", "Stopping"),
    ("Stopping", "Stopped"),
    ("Stopping", "Failed"),
}


def test_status_values_are_sagemakers() -> None:
    assert [s.value for s in JobStatus] == ["InProgress", "Completed", "Failed", "Stopping", "Stopped"]
    assert JobStatus("InProgress") is JobStatus.IN_PROGRESS
    assert JobStatus.STOPPED == "Stopped" and str(JobStatus.STOPPED) == "Stopped"
    assert f"{JobStatus.FAILED}" == "Failed"


@pytest.mark.parametrize(
    ("current", "target"), list(itertools.product([s.value for s in JobStatus], repeat=2))
)
def test_transition_table(current: str, target: str) -> None:
    allowed = (current, target) in ALLOWED
    assert can_transition(current, target) is allowed
    if allowed:
        check_transition(current, target)
    else:
        with pytest.raises(Conflict, match=f"from {current} to {target}"):
            check_transition(current, target, name="job-1")


def test_table_covers_every_status_and_terminal_states_are_final() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    assert {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED} == TERMINAL
    assert {JobStatus.IN_PROGRESS, JobStatus.STOPPING} == ACTIVE
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()
        assert status.is_terminal
    assert not JobStatus.STOPPING.is_terminal


def test_stop_then_complete_is_refused() -> None:
    with pytest.raises(Conflict, match="transform job j from Stopping to Completed"):
        check_transition(JobStatus.STOPPING, JobStatus.COMPLETED, name="j")


def test_parse_status_error_is_aws_shaped() -> None:
    assert JobStatus.parse("Stopped") is JobStatus.STOPPED
    with pytest.raises(
        ValidationError, match=r"Value 'Done' at 'StatusEquals' failed to satisfy constraint"
    ) as info:
        JobStatus.parse("Done")
    assert "InProgress, Completed, Failed, Stopping, Stopped" in str(info.value)
    assert info.value.field == "StatusEquals"


@pytest.mark.parametrize(
    ("current", "target", "ok"),
    [
        ("pending", "done", True),
        ("pending", "failed", True),
        ("failed", "pending", True),
        ("done", "pending", False),
        ("done", "failed", False),
        ("failed", "done", False),
        ("pending", "pending", False),
    ],
)
def test_file_transitions(current: str, target: str, ok: bool) -> None:
    if ok:
        check_file_transition(current, target)
    else:
        with pytest.raises(Conflict, match=f"input file 'k' from {current} to {target}"):
            check_file_transition(current, target, key="k")
    assert FileState(current) == current


@pytest.mark.parametrize("name", ["a", "job-1", "A--b", "x" * 63, "0"])
def test_valid_job_names(name: str) -> None:
    assert check_job_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "a_b", "a.b", "../../etc", "x" * 64, "a b", "é"])
def test_invalid_job_names(name: str) -> None:
    with pytest.raises(ValidationError, match="TransformJobName"):
        check_job_name(name)
