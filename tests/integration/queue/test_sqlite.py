"""The embedded queue on real SQLite files: SQS semantics, fenced leases, dead letters, retention, concurrency.

Time is an injected clock, so the seed's 900 s visibility timeout and 4-day retention need no sleeping.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from batchlane.errors import NotFound, PayloadTooLarge, StaleReceipt, ValidationError
from batchlane.queue import Queue, create_queue, open_queue
from batchlane.queue.base import MAX_BODY_BYTES
from batchlane.queue.sqlite import SqliteQueue


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture()
def queue(db: Path, clock: FakeClock) -> SqliteQueue:
    q = SqliteQueue(db, "jobs", clock=clock)
    yield q
    q.close()


def test_send_receive_delete(queue: SqliteQueue, clock: FakeClock) -> None:
    assert isinstance(queue, Queue)
    message_id = queue.send('{"a": 1}', attributes={"origin": "test"})
    clock.advance(5)
    [message] = queue.receive()
    assert (message.message_id, message.body, message.receive_count) == (message_id, '{"a": 1}', 1)
    assert message.sent_at == clock.now - 5 and message.first_received_at == clock.now
    assert message.attributes == {"origin": "test"}
    assert queue.receive() == []  # in flight: hidden
    attrs = queue.attributes()
    assert (attrs["visible"], attrs["in_flight"], attrs["delayed"], attrs["oldest_age_s"]) == (0, 1, 0, 5)
    settings = (attrs["visibility_timeout_s"], attrs["max_receive_count"], attrs["retention_s"])
    assert settings == (900, 5, 345_600)
    queue.delete(message)
    attrs = queue.attributes()
    assert (attrs["visible"], attrs["in_flight"], attrs["oldest_age_s"]) == (0, 0, None)
    with pytest.raises(StaleReceipt, match="deleted"):
        queue.delete(message)


def test_visibility_timeout_expiry_redelivers_with_receive_count_2(
    queue: SqliteQueue, clock: FakeClock
) -> None:
    queue.send("m")
    first = queue.receive()[0]
    clock.advance(899)
    assert queue.receive() == []
    clock.advance(1)
    second = queue.receive()[0]
    assert second.message_id == first.message_id and second.receipt != first.receipt
    assert second.receive_count == 2 and second.first_received_at == first.first_received_at


def test_receive_can_override_the_visibility_timeout(queue: SqliteQueue, clock: FakeClock) -> None:
    queue.send("m")
    queue.receive(visibility_timeout_s=10)
    clock.advance(10)
    assert queue.receive()[0].receive_count == 2


def test_heartbeat_keeps_the_message_hidden(queue: SqliteQueue, clock: FakeClock) -> None:
    queue.send("m")
    [message] = queue.receive()
    for _ in range(5):  # a long job heartbeating every 600 s: 3000 s in all, far past 900
        clock.advance(600)
        queue.change_visibility(message, 900)
        assert queue.receive() == []
    queue.delete(message)
    assert queue.attributes()["in_flight"] == 0


def test_nack_redelivers_at_once_and_records_the_reason(queue: SqliteQueue) -> None:
    queue.send("m")
    [first] = queue.receive()
    queue.nack(first, "S3 timed out")
    [second] = queue.receive()
    assert second.receive_count == 2 and second.attributes["last_error"] == "S3 timed out"
    with pytest.raises(StaleReceipt, match="received again"):
        queue.delete(first)


def test_released_receipt_is_refused(queue: SqliteQueue) -> None:
    queue.send("m")
    [message] = queue.receive()
    queue.change_visibility(message, 0)
    with pytest.raises(StaleReceipt, match="released"):
        queue.change_visibility(message, 30)


def test_poison_message_goes_to_the_dlq_after_5_receives_with_its_reason(queue: SqliteQueue) -> None:
    message_id = queue.send("poison")
    for attempt in range(1, 6):
        [message] = queue.receive()
        assert message.receive_count == attempt
        queue.nack(message, f"model crashed (attempt {attempt})")
    assert queue.receive() == []  # the 6th receive would exceed maxReceiveCount 5
    [letter] = queue.list_dead_letters()
    assert letter.message_id == message_id and letter.attempts == 5 and letter.source_queue == "jobs"
    assert "maxReceiveCount exceeded" in letter.reason and "limit 5" in letter.reason
    assert "last error: model crashed (attempt 5)" in letter.reason
    assert [h["event"] for h in letter.history] == ["error"] * 5 + ["max_receive_count"]
    attrs = queue.attributes()
    assert (attrs["visible"], attrs["dead_letters"], attrs["dead_letter_queue"]) == (0, 1, "jobs-dlq")


def test_lease_expiry_counts_as_a_failed_receive(queue: SqliteQueue, clock: FakeClock) -> None:
    """A worker that dies (no nack) still moves the message towards the DLQ, with a reason saying so."""
    queue.send("m")
    for _ in range(5):
        assert queue.receive()
        clock.advance(900)
    assert queue.receive() == []
    [letter] = queue.list_dead_letters()
    assert letter.reason == "maxReceiveCount exceeded: received 5 times without being deleted (limit 5)"


def test_permanent_error_dead_letters_at_once_keeping_history(queue: SqliteQueue) -> None:
    message_id = queue.send('{"instance_count": true}')
    [first] = queue.receive()
    queue.nack(first, "S3 unreachable")
    [second] = queue.receive()
    assert queue.dead_letter(second, "invalid message: instance_count: not a boolean") == message_id
    [letter] = queue.list_dead_letters()
    assert letter.reason == "invalid message: instance_count: not a boolean"
    assert letter.attempts == 2 and letter.body == '{"instance_count": true}'
    assert [(h["event"], h["reason"]) for h in letter.history] == [
        ("error", "S3 unreachable"),
        ("dead_letter", "invalid message: instance_count: not a boolean"),
    ]
    assert queue.receive() == []
    with pytest.raises(StaleReceipt, match="moved to queue jobs-dlq"):
        queue.delete(second)


def test_stale_receipt_of_a_zombie_worker_is_refused(db: Path, clock: FakeClock) -> None:
    """Worker A's lease expires, B receives the message; A's ack and extend are refused, B's ack works."""
    worker_a = SqliteQueue(db, "jobs", clock=clock)
    worker_b = SqliteQueue(db, "jobs", clock=clock)
    worker_a.send("job")
    [held_by_a] = worker_a.receive()
    clock.advance(901)  # A is paused past its lease
    with pytest.raises(StaleReceipt, match="expired"):
        worker_a.change_visibility(held_by_a, 900)
    [held_by_b] = worker_b.receive()
    assert held_by_b.receive_count == 2
    with pytest.raises(StaleReceipt, match="received again") as refused:
        worker_a.delete(held_by_a)
    assert refused.value.code == "ReceiptHandleIsInvalid"
    with pytest.raises(StaleReceipt):
        worker_a.change_visibility(held_by_a.receipt, 900)
    with pytest.raises(StaleReceipt):
        worker_a.dead_letter(held_by_a, "zombie says no")
    assert worker_b.attributes()["in_flight"] == 1  # A's calls changed nothing
    worker_b.delete(held_by_b)
    assert worker_b.attributes()["in_flight"] == 0 and worker_b.list_dead_letters() == []


def test_expired_lease_is_refused_even_if_nobody_received_again(queue: SqliteQueue, clock: FakeClock) -> None:
    queue.send("m")
    [message] = queue.receive()
    clock.advance(900)
    with pytest.raises(StaleReceipt, match="expired 0.0s ago"):
        queue.delete(message)


def test_malformed_receipt_is_a_validation_error(queue: SqliteQueue) -> None:
    with pytest.raises(ValidationError, match="not a receipt handle"):
        queue.delete("garbage")


def test_redrive_resets_the_receive_count_and_records_it(queue: SqliteQueue, clock: FakeClock) -> None:
    ids = [queue.send(f"m{i}") for i in range(3)]
    for _ in range(3):
        queue.dead_letter(queue.receive()[0], "bad")
    assert [d.message_id for d in queue.list_dead_letters()] == ids
    with pytest.raises(NotFound, match="not in dead-letter queue"):
        queue.redrive(["no-such-id", ids[0]])
    assert len(queue.list_dead_letters()) == 3  # all or nothing
    assert queue.redrive([ids[1]]) == [ids[1]]
    [again] = queue.receive()
    assert (
        again.message_id == ids[1] and again.receive_count == 1 and again.attributes["redrive_count"] == "1"
    )
    assert queue.redrive() == [ids[0], ids[2]]
    assert queue.list_dead_letters() == []
    queue.delete(again)
    for message in queue.receive(10):
        if message.message_id != ids[0]:
            queue.delete(message)
        else:
            queue.nack(message)
    # A redriven message gets the full receive budget again (floci#900: carried counts bounce it straight back).
    for attempt in range(2, 6):
        [message] = queue.receive()
        assert message.message_id == ids[0] and message.receive_count == attempt
        queue.nack(message, "still failing")
    assert queue.receive() == []
    [letter] = queue.list_dead_letters()
    assert letter.message_id == ids[0] and letter.redrive_count == 1 and letter.attempts == 5
    assert [h["event"] for h in letter.history][:2] == ["dead_letter", "redrive"]


def test_retention_expiry_surfaces_in_the_dlq(queue: SqliteQueue, clock: FakeClock) -> None:
    queue.send("in-flight")
    queue.send("old")
    [held] = queue.receive()
    assert held.body == "in-flight"
    queue.change_visibility(held, 43_200)
    for _ in range(8):  # the holder heartbeats through 4 days
        clock.advance(43_000)
        queue.change_visibility(held, 43_200)
    clock.advance(4 * 86_400 - 1 - 8 * 43_000)
    assert queue.attributes()["oldest_age_s"] == 4 * 86_400 - 1
    clock.advance(1)
    attrs = queue.attributes()
    # A message under a live lease is not expired.
    assert attrs["dead_letters"] == 1 and attrs["in_flight"] == 1
    [letter] = queue.list_dead_letters()
    assert letter.body == "old"
    assert letter.reason.startswith("expired: not deleted within the retention period")
    clock.advance(43_200)
    assert queue.receive() == []  # lease over and past retention: expired too, not redelivered
    assert [d.body for d in queue.list_dead_letters()] == ["old", "in-flight"]
    # The dead-letter queue keeps messages until redriven or purged: nothing expires silently.
    clock.advance(30 * 86_400)
    assert len(queue.list_dead_letters()) == 2


@pytest.mark.slow
def test_concurrent_consumers_never_receive_the_same_message(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    producer = SqliteQueue(db, "jobs")
    sent = {producer.send(f"m{i}") for i in range(120)}
    received: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(len(received))

    def consume(slot: list[str]) -> None:
        consumer = SqliteQueue(db, "jobs")
        start.wait()
        while batch := consumer.receive(max_messages=5):
            time.sleep(0.02)  # the work, done outside the queue's lock
            for message in batch:
                slot.append(message.message_id)
                consumer.delete(message)

    threads = [threading.Thread(target=consume, args=(slot,)) for slot in received]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [m for slot in received for m in slot]
    assert len(everything) == len(set(everything)) == 120 and set(everything) == sent
    assert sum(1 for slot in received if slot) > 1  # they really competed
    assert producer.attributes()["in_flight"] == 0


@pytest.mark.slow
def test_long_polling_returns_as_soon_as_a_message_arrives(tmp_path: Path) -> None:
    queue = SqliteQueue(tmp_path / "queue.db", "jobs", poll_interval_s=0.02)
    started = time.monotonic()
    assert queue.receive(wait_s=0.2) == []
    assert 0.2 <= time.monotonic() - started < 1.0
    timer = threading.Timer(0.2, lambda: SqliteQueue(tmp_path / "queue.db", "jobs").send("late"))
    timer.start()
    started = time.monotonic()
    [message] = queue.receive(wait_s=10)
    assert message.body == "late" and time.monotonic() - started < 2.0
    timer.join()


def test_limits_on_body_size_and_characters(queue: SqliteQueue) -> None:
    queue.send("x" * MAX_BODY_BYTES)
    with pytest.raises(PayloadTooLarge, match="1048577 bytes; the limit is 1048576 bytes"):
        queue.send("x" * (MAX_BODY_BYTES + 1))
    with pytest.raises(PayloadTooLarge):
        queue.send("é" * (MAX_BODY_BYTES // 2 + 1))  # bytes, not characters
    with pytest.raises(ValidationError, match="U\\+0000 at offset 3"):
        queue.send("abc\x00")
    with pytest.raises(ValidationError, match="U\\+FFFE"):
        queue.send("\ufffe")
    queue.send("tab\tnewline\n emoji 🙂")


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"max_messages": 0}, "max_messages"),
        ({"max_messages": 11}, "max_messages"),
        ({"wait_s": 21}, "wait_s"),
        ({"visibility_timeout_s": 43_201}, "visibility_timeout_s"),
        ({"max_messages": True}, "max_messages"),
    ],
)
def test_receive_arguments_are_checked(queue: SqliteQueue, kwargs: dict, what: str) -> None:
    with pytest.raises(ValidationError, match=what):
        queue.receive(**kwargs)


def test_dedup_id_suppresses_resends_for_five_minutes(queue: SqliteQueue, clock: FakeClock) -> None:
    first = queue.send("a", dedup_id="job-1")
    assert queue.send("a", dedup_id="job-1") == first
    clock.advance(301)
    assert queue.send("a", dedup_id="job-1") != first
    assert queue.attributes()["visible"] == 2


def test_delayed_messages(queue: SqliteQueue, clock: FakeClock) -> None:
    queue.send("later", delay_s=60)
    assert queue.receive() == [] and queue.attributes()["delayed"] == 1
    clock.advance(60)
    assert queue.receive()[0].body == "later"
    with pytest.raises(ValidationError, match="delay_s"):
        queue.send("x", delay_s=901)


def test_settings_are_stored_and_updated(db: Path, clock: FakeClock) -> None:
    SqliteQueue(db, "fast", visibility_timeout_s=30, max_receive_count=2, retention_s=3600, clock=clock)
    reopened = SqliteQueue(db, "fast", clock=clock)
    attrs = reopened.attributes()
    assert (attrs["visibility_timeout_s"], attrs["max_receive_count"], attrs["retention_s"]) == (30, 2, 3600)
    reopened.send("m")
    reopened.receive()
    clock.advance(30)
    reopened.receive()
    clock.advance(30)
    assert reopened.receive() == [] and reopened.attributes()["dead_letters"] == 1
    dlq = reopened.dead_letter_queue
    assert dlq is not None and dlq.name == "fast-dlq" and dlq.dead_letter_queue is None
    assert dlq.attributes()["max_receive_count"] is None and dlq.attributes()["retention_s"] is None
    # The dead-letter queue is a queue: it can be consumed directly.
    [dead] = dlq.receive()
    assert dead.attributes["source_queue"] == "fast" and "maxReceiveCount" in dead.attributes["dead_reason"]
    with pytest.raises(ValidationError, match="max_receive_count"):
        SqliteQueue(db, "fast", max_receive_count=0)


def test_purge_empties_only_the_queue(queue: SqliteQueue) -> None:
    queue.send("a")
    queue.dead_letter(queue.receive()[0], "bad")
    queue.send("b")
    queue.send("c")
    assert queue.purge() == 2
    assert queue.attributes()["visible"] == 0 and queue.attributes()["dead_letters"] == 1


def test_open_queue_urls(tmp_path: Path) -> None:
    env = {"BATCHLANE_HOME": str(tmp_path / "home")}
    default = open_queue(None, env)
    assert isinstance(default, SqliteQueue) and default.name == "batchlane-jobs"
    assert default.path == tmp_path / "home" / "queue.db"
    named = open_queue("orders", env)
    assert named.name == "orders" and named.path == default.path
    assert open_queue(None, {**env, "BATCHLANE_QUEUE": "from-env"}).name == "from-env"
    by_url = open_queue(f"sqlite://{tmp_path}/other.db?queue=jobs", env)
    assert isinstance(by_url, SqliteQueue) and by_url.path == tmp_path / "other.db" and by_url.name == "jobs"
    again = open_queue(by_url.url, env)
    assert again.url == by_url.url
    by_url.send("x")
    assert again.receive()[0].body == "x"
    created = create_queue(f"sqlite://{tmp_path}/other.db?queue=slow", env, visibility_timeout_s=60)
    assert created.attributes()["visibility_timeout_s"] == 60
    for bad in ("ftp://host/q", "bad name!", "sqlite://?queue=x"):
        with pytest.raises(ValidationError):
            open_queue(bad, env)
