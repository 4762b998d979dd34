"""The checks after a control-plane load run (bench/control_plane_load.py), made through the API like a user would.

Jobs: every one still running is stopped and all must end; every accepted create is listed exactly once (all pages)
and no refused one; a Completed job has its ``.out``. Messages: every one sent was received and deleted exactly once
or is still in the queue, which is drained and must end empty. ``run`` is the load's shared state
(``control_plane_load.Run``): its accepted names, create errors, sent / received / deleted sequence numbers.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

TERMINAL = ("Completed", "Failed", "Stopped")


def seq_of(run: Any, message: dict[str, Any]) -> int | None:
    try:
        body = json.loads(message["Body"])
        return int(body["seq"]) if body.get("run") == run.prefix else None
    except (ValueError, KeyError, TypeError):
        return None


def list_all(sm: Any, **filters: Any) -> list[dict[str, Any]]:
    summaries, token = [], None
    while True:
        page = sm.list_transform_jobs(MaxResults=100, **filters, **({"NextToken": token} if token else {}))
        summaries += page["TransformJobSummaries"]
        token = page.get("NextToken")
        if not token:
            return summaries


def settle(run: Any, sm: Any, seconds: float) -> float:
    """Stop every job of the run still InProgress and wait until none is InProgress or Stopping; returns the wait."""
    started = time.monotonic()
    for summary in list_all(sm, NameContains=run.prefix, StatusEquals="InProgress"):
        sm.stop_transform_job(TransformJobName=summary["TransformJobName"])
    while time.monotonic() - started < seconds:
        active = [s for s in list_all(sm, NameContains=run.prefix) if s["TransformJobStatus"] not in TERMINAL]
        if not active:
            break
        time.sleep(1)
    return time.monotonic() - started


def drain(run: Any, sqs: Any) -> list[int]:
    """Receive and delete whatever is still visible in the queue; returns the sequence numbers found there."""
    found: list[int] = []
    empty = 0
    while empty < 2:
        messages = sqs.receive_message(QueueUrl=run.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        empty = 0 if messages else empty + 1
        for message in messages:
            seq = seq_of(run, message)
            if seq is None:
                run.unknown_messages += 1
            else:
                found.append(seq)
            sqs.delete_message(QueueUrl=run.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return found


def check(run: Any, sm: Any, sqs: Any, settle_s: float) -> dict[str, Any]:
    waited = settle(run, sm, settle_s)
    listed = list_all(sm, NameContains=run.prefix, SortBy="Name", SortOrder="Ascending")
    counts = Counter(s["TransformJobName"] for s in listed)
    status = {s["TransformJobName"]: s["TransformJobStatus"] for s in listed}
    accepted = set(run.accepted)
    refused = {n for n, outcome in run.create_errors.items() if outcome.startswith("4")}
    unclear = {n for n, outcome in run.create_errors.items() if not outcome.startswith("4")}
    missing_out = []
    for name in accepted:
        if status.get(name) == "Completed":
            out = run.root / "out" / name / "tickets.jsonl.out"
            if not out.is_file() or len(out.read_text().splitlines()) != 2:
                missing_out.append(name)
    drained = drain(run, sqs)
    attributes = sqs.get_queue_attributes(QueueUrl=run.queue_url, AttributeNames=["All"])["Attributes"]
    sent = set(run.sent)
    in_flight = set(run.delete_errors) - run.deleted
    jobs = {
        "accepted": len(accepted),
        "listed": len(listed),
        "by_status": dict(Counter(status.get(n, "not listed") for n in accepted)),
        "stop_requested_during_load": len(run.stop_requested),
        "lost": sorted(accepted - set(counts)),
        "listed_twice": sorted(n for n, c in counts.items() if c > 1),
        "refused_but_listed": sorted(refused & set(counts)),
        "unclear_creates_listed": sorted(unclear & set(counts)),
        "unexpected_listed": sorted(set(counts) - accepted - refused - unclear),
        "not_terminal": sorted(n for n in accepted if status.get(n) not in TERMINAL),
        "second_create_accepted": sorted(run.duplicates_accepted),
        "completed_without_output": sorted(missing_out),
        "settle_s": round(waited, 1),
    }
    messages = {
        "sent": len(sent),
        "send_errors": len(run.send_errors),
        "received_and_deleted": len(run.deleted),
        "still_in_queue": len(drained),
        "received_twice": sorted(seq for seq, c in run.received.items() if c > 1),
        "drained_after_delete": sorted(set(drained) & run.deleted),
        "drained_twice": sorted(seq for seq, c in Counter(drained).items() if c > 1),
        "lost": sorted(sent - run.deleted - set(drained) - in_flight),
        "in_flight_after_failed_delete": sorted(in_flight),
        "not_sent_but_seen": sorted((set(run.received) | set(drained)) - sent - set(run.send_errors)),
        "unknown_bodies": run.unknown_messages,
        "queue_after_drain": {
            "visible": int(attributes["ApproximateNumberOfMessages"]),
            "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        },
    }
    return {"jobs": jobs, "messages": messages}


def problems(result: dict[str, Any]) -> list[str]:
    found = []
    by_code = result["outcomes"]
    server_errors = {k: v for k, v in by_code.items() if k.startswith("5") or not k[0].isdigit()}
    if server_errors:
        found.append(f"calls answered 5xx or failed in transport: {server_errors}")
    unexpected = {k: v for k, v in result["unexpected_4xx"].items() if v}
    if unexpected:
        found.append(f"unexpected 4xx answers: {unexpected}")
    for section in ("jobs", "messages"):
        for key, value in result["checks"][section].items():
            bad = key not in (
                "by_status",
                "unclear_creates_listed",
                "in_flight_after_failed_delete",
                "queue_after_drain",
            )
            if bad and isinstance(value, list) and value:
                found.append(f"{section}: {key}: {len(value)} ({value[:5]})")
    jobs, messages = result["checks"]["jobs"], result["checks"]["messages"]
    if messages["unknown_bodies"]:
        found.append(f"messages: {messages['unknown_bodies']} messages that no client sent")
    if messages["queue_after_drain"]["visible"] or messages["queue_after_drain"]["in_flight"] != len(
        messages["in_flight_after_failed_delete"]
    ):
        found.append(f"messages: queue not empty after the drain: {messages['queue_after_drain']}")
    if jobs["listed"] != jobs["accepted"] + len(jobs["unclear_creates_listed"]):
        found.append(f"jobs: {jobs['listed']} listed for {jobs['accepted']} accepted")
    return found
