"""The queue backends' batch calls (``send_batch``, ``delete_batch``, ``change_visibility_batch``): a real SQLite
file with an injected clock, and the SQS backend against moto's server. One outcome per entry, in entry order; a
refused entry does not stop the others."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from batchlane.errors import PayloadTooLarge, StaleReceipt, ValidationError
from batchlane.queue.base import MAX_BODY_BYTES, SendEntry
from batchlane.queue.sqlite import SqliteQueue
from batchlane.queue.sqs import SqsQueue, ensure_queue


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def queue(tmp_path: Path, clock: FakeClock) -> SqliteQueue:
    q = SqliteQueue(tmp_path / "queue.db", "jobs", visibility_timeout_s=60, clock=clock)
    yield q
    q.close()


def test_sqlite_send_batch_reports_each_entry(queue: SqliteQueue) -> None:
    outcomes = queue.send_batch(
        [
            SendEntry("one", attributes={"kind": "a"}),
            SendEntry("bell \x07"),
            SendEntry("x" * (MAX_BODY_BYTES + 1)),
            SendEntry("late", delay_s=901),
            SendEntry("two", dedup_id="d1"),
            SendEntry("two again", dedup_id="d1"),  # deduplicated within the same batch
        ]
    )
    assert isinstance(outcomes[0], str)
    assert isinstance(outcomes[1], ValidationError) and outcomes[1].field == "body"
    assert isinstance(outcomes[2], PayloadTooLarge)
    assert isinstance(outcomes[3], ValidationError) and outcomes[3].field == "delay_s"
    assert isinstance(outcomes[4], str) and outcomes[5] == outcomes[4]
    received = queue.receive(max_messages=10)
    assert {(m.message_id, m.body) for m in received} == {(outcomes[0], "one"), (outcomes[4], "two")}
    assert [m.attributes for m in received if m.body == "one"] == [{"kind": "a"}]
    assert queue.send_batch([]) == []


def test_sqlite_delete_batch_is_fenced_per_receipt(queue: SqliteQueue, clock: FakeClock) -> None:
    queue.send_batch([SendEntry("a"), SendEntry("b"), SendEntry("c")])
    a, b, c = sorted(queue.receive(max_messages=3), key=lambda m: m.body)
    queue.nack(b)
    [b_again] = queue.receive()
    outcomes = queue.delete_batch([a, b.receipt, "malformed", b_again])
    assert outcomes[0] is None and outcomes[3] is None
    assert isinstance(outcomes[1], StaleReceipt) and "received again" in outcomes[1].message
    assert isinstance(outcomes[2], ValidationError) and outcomes[2].field == "receipt"
    clock.now += 61  # c's lease ran out: its delete is refused, and c is delivered again
    [expired] = queue.delete_batch([c])
    assert isinstance(expired, StaleReceipt) and "expired" in expired.message
    assert [m.body for m in queue.receive(max_messages=10)] == ["c"]


def test_sqlite_change_visibility_batch(queue: SqliteQueue, clock: FakeClock) -> None:
    queue.send_batch([SendEntry("release"), SendEntry("keep")])
    held = {m.body: m for m in queue.receive(max_messages=2)}
    outcomes = queue.change_visibility_batch(
        [(held["release"], 0), (held["keep"], 600), (held["keep"], 43_201), ("nobody:token", 5)]
    )
    assert outcomes[:2] == [None, None]
    assert isinstance(outcomes[2], ValidationError) and isinstance(outcomes[3], StaleReceipt)
    [released] = queue.receive(max_messages=10)
    assert released.body == "release"
    queue.delete(released)
    clock.now += 599
    assert queue.receive() == []  # "keep" is hidden for 600 s from the change
    clock.now += 2
    assert [m.body for m in queue.receive()] == ["keep"]


@pytest.fixture()
def sqs_queue(moto_server: str, aws_env: dict[str, str]) -> SqsQueue:
    q = ensure_queue(f"batch-{uuid.uuid4().hex[:8]}", env={**aws_env, "AWS_ENDPOINT_URL_SQS": moto_server})
    yield q
    q.close()


def test_sqs_batches_are_split_into_calls_of_10_and_failures_come_back_per_entry(sqs_queue: SqsQueue) -> None:
    entries = [SendEntry(f"m{i}") for i in range(12)]
    entries[5] = SendEntry("bell \x07")  # refused before SQS is called
    outcomes = sqs_queue.send_batch(entries)
    assert isinstance(outcomes[5], ValidationError)
    assert all(isinstance(o, str) for i, o in enumerate(outcomes) if i != 5)

    received: list = []
    while batch := sqs_queue.receive(max_messages=10, visibility_timeout_s=60):
        received += batch
    assert sorted(m.body for m in received) == sorted(f"m{i}" for i in range(12) if i != 5)

    outcomes = sqs_queue.delete_batch([*received[:10], "bogus-handle"])
    assert outcomes[:10] == [None] * 10
    assert isinstance(outcomes[10], StaleReceipt) and "ReceiptHandleIsInvalid" in outcomes[10].message

    [last] = received[10:]
    outcomes = sqs_queue.change_visibility_batch([(last, 0), (last, 43_201)])
    assert outcomes[0] is None and isinstance(outcomes[1], ValidationError)
    assert [m.body for m in sqs_queue.receive(max_messages=10, wait_s=1)] == [last.body]
