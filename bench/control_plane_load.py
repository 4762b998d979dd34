"""Control-plane load: ``--clients`` boto3 clients make ``--calls`` mixed SageMaker and SQS calls to ``batchlane server``.

A real server (a subprocess on a free loopback port, SigV4 keys, ``--workers 2``) runs the jobs it is given while
each client thread, with its own boto3 session, picks calls at random: CreateTransformJob (unique names and
outputs, one tiny JSON Lines input, the echo model of ``tests/models/echo``), a repeated create of an accepted name
(must be refused: ``ResourceInUse``), DescribeTransformJob, ListTransformJobs, StopTransformJob, and SQS
SendMessage / ReceiveMessage / DeleteMessage on a queue of its own (every received message is deleted). Calls stop
at ``--calls`` or after ``--max-seconds``. botocore retries are off, so every 5xx is seen.

Then the run is checked through the API: every job still running is stopped, all must reach a terminal state
within ``--settle-s``; every accepted create is listed exactly once and no refused one at all; Completed jobs have
their ``.out``; every message sent was received and deleted exactly once, or is still in the queue (drained and
counted). Reported: calls by kind and answer, requests/s, p50/p99 latency per kind and overall, and the checks.
The exit status is 1 when a call answered 5xx or failed in transport, or a check failed.

    python bench/control_plane_load.py                       # 20 clients, 5,000 calls (make bench-load)
    python bench/control_plane_load.py --calls 200 --no-write --json out.json       # the test suite's
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from batchlane.testing import free_port, stop_process, wait_for_http

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import serve_soak  # noqa: E402  (percentile)
from load_checks import check, problems, seq_of  # noqa: E402

logger = logging.getLogger("bench")
KEY, SECRET = "AKIDBENCHLOAD", "bench-load-secret"
ECHO_MODEL = ROOT / "tests" / "models" / "echo"
# Relative weights of what a client does next; a receive is followed by one DeleteMessage per message received.
MIX = {
    "create": 8,
    "create-again": 1,
    "describe": 25,
    "list": 10,
    "stop": 6,
    "send": 22,
    "receive": 14,
}
KINDS = (
    "CreateTransformJob",
    "CreateTransformJob (name in use)",
    "DescribeTransformJob",
    "ListTransformJobs",
    "StopTransformJob",
    "SendMessage",
    "ReceiveMessage",
    "DeleteMessage",
)


class Budget:
    """The calls left; ``take(n)`` grants up to ``n`` of them, ``give_back`` returns unused ones."""

    def __init__(self, calls: int, seconds: float) -> None:
        self.left = calls
        self.deadline = time.monotonic() + seconds
        self._lock = threading.Lock()

    def take(self, n: int = 1) -> int:
        with self._lock:
            granted = 0 if time.monotonic() > self.deadline else min(n, self.left)
            self.left -= granted
            return granted

    def give_back(self, n: int) -> None:
        with self._lock:
            self.left += n


class Run:
    """Shared state of one load run: what was accepted, sent, received and deleted, and every call's outcome."""

    def __init__(self, root: Path, prefix: str, queue_url: str) -> None:
        self.root, self.prefix, self.queue_url = root, prefix, queue_url
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, float]] = []  # (kind, outcome, seconds)
        self.accepted: list[str] = []
        self.create_errors: dict[str, str] = {}  # name -> outcome of a create that was not accepted
        self.duplicates_accepted: list[str] = []
        self.stop_requested: set[str] = set()
        self.sent: dict[int, str] = {}  # seq -> MessageId
        self.send_errors: dict[int, str] = {}
        self.received: Counter[int] = Counter()
        self.deleted: set[int] = set()
        self.delete_errors: dict[int, str] = {}
        self.unknown_messages = 0
        self._names = iter(range(10**9))
        self._seqs = iter(range(10**9))

    def next_name(self) -> str:
        with self.lock:
            return f"{self.prefix}-{next(self._names):05d}"

    def next_seq(self) -> int:
        with self.lock:
            return next(self._seqs)

    def request(self, name: str) -> dict[str, Any]:
        return {
            "TransformJobName": name,
            "ModelName": "echo",
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{self.root / 'in'}/"}},
                "ContentType": "application/jsonlines",
                "SplitType": "Line",
            },
            "TransformOutput": {"S3OutputPath": f"{self.root / 'out' / name}/", "AssembleWith": "Line"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        }


def clients(url: str) -> tuple[Any, Any]:
    """A SageMaker and an SQS client of a session of their own, retries off (every 5xx must be seen)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=KEY, aws_secret_access_key=SECRET, region_name="us-east-1"
    )
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=120)
    return session.client("sagemaker", endpoint_url=url, config=config), session.client(
        "sqs", endpoint_url=url, config=config
    )


def call(run: Run, kind: str, fn: Any, **kwargs: Any) -> tuple[str, dict[str, Any] | None]:
    """Make one timed call; returns its outcome ("200", "400 ResourceInUse", "500 InternalFailure", "ReadTimeout")."""
    from botocore.exceptions import BotoCoreError, ClientError

    answer = None
    started = time.perf_counter()
    try:
        answer = fn(**kwargs)
        outcome = "200"
    except ClientError as exc:
        meta = exc.response.get("ResponseMetadata", {})
        outcome = f"{meta.get('HTTPStatusCode', '?')} {exc.response.get('Error', {}).get('Code', '?')}"
    except BotoCoreError as exc:
        outcome = type(exc).__name__
    elapsed = time.perf_counter() - started
    with run.lock:
        run.calls.append((kind, outcome, elapsed))
    return outcome, answer


def client_loop(run: Run, url: str, budget: Budget, seed: int, ready: threading.Barrier) -> None:
    sm, sqs = clients(url)
    ready.wait()  # the clock starts when every client exists (creating 20 boto3 clients takes seconds)
    rng = random.Random(seed)
    ops, weights = list(MIX), list(MIX.values())
    while True:
        op = rng.choices(ops, weights)[0]
        with run.lock:
            accepted = list(run.accepted[-50:]) if op in ("create-again", "describe", "stop") else []
        if op in ("create-again", "describe", "stop") and not accepted:
            op = "create"
        if op == "receive":
            granted = budget.take(11)
            if granted < 2:  # room for a receive but not for deleting what it gets
                budget.give_back(granted)
                op, granted = "send", budget.take(1)
        else:
            granted = budget.take(1)
        if not granted:
            return
        if op == "create":
            name = run.next_name()
            outcome, _ = call(run, KINDS[0], sm.create_transform_job, **run.request(name))
            with run.lock:
                if outcome == "200":
                    run.accepted.append(name)
                else:
                    run.create_errors[name] = outcome
        elif op == "create-again":
            name = rng.choice(accepted)
            outcome, _ = call(run, KINDS[1], sm.create_transform_job, **run.request(name))
            if outcome == "200":
                with run.lock:
                    run.duplicates_accepted.append(name)
        elif op == "describe":
            call(run, KINDS[2], sm.describe_transform_job, TransformJobName=rng.choice(accepted))
        elif op == "list":
            filters = rng.choice(
                [
                    {"NameContains": run.prefix, "MaxResults": 20},
                    {"StatusEquals": "InProgress", "MaxResults": 50},
                    {"SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 10},
                    {},
                ]
            )
            call(run, KINDS[3], sm.list_transform_jobs, **filters)
        elif op == "stop":
            name = rng.choice(accepted[-20:])
            outcome, _ = call(run, KINDS[4], sm.stop_transform_job, TransformJobName=name)
            if outcome == "200":
                with run.lock:
                    run.stop_requested.add(name)
        elif op == "send":
            seq = run.next_seq()
            body = json.dumps({"run": run.prefix, "seq": seq})
            outcome, answer = call(run, KINDS[5], sqs.send_message, QueueUrl=run.queue_url, MessageBody=body)
            with run.lock:
                if answer:
                    run.sent[seq] = answer["MessageId"]
                else:
                    run.send_errors[seq] = outcome
        else:
            receive_and_delete(run, sqs, budget, granted - 1)


def receive_and_delete(run: Run, sqs: Any, budget: Budget, most: int) -> None:
    """One ReceiveMessage of up to ``most`` messages (``most`` + 1 calls already taken), then one delete each."""
    _, answer = call(run, KINDS[6], sqs.receive_message, QueueUrl=run.queue_url, MaxNumberOfMessages=most)
    messages = (answer or {}).get("Messages", [])
    budget.give_back(most - len(messages))
    for message in messages:
        seq = seq_of(run, message)
        with run.lock:
            if seq is None:
                run.unknown_messages += 1
            else:
                run.received[seq] += 1
        outcome, _ = call(
            run, KINDS[7], sqs.delete_message, QueueUrl=run.queue_url, ReceiptHandle=message["ReceiptHandle"]
        )
        if seq is not None:
            with run.lock:
                if outcome == "200":
                    run.deleted.add(seq)
                else:
                    run.delete_errors[seq] = outcome


def summarise(run: Run, seconds: float) -> dict[str, Any]:
    by_kind: dict[str, list[float]] = defaultdict(list)
    outcomes: Counter[str] = Counter()
    table = []
    unexpected: Counter[str] = Counter()
    for kind, outcome, elapsed in run.calls:
        by_kind[kind].append(elapsed)
        outcomes[outcome] += 1
        expected = outcome == "200" or (kind == KINDS[1] and outcome == "400 ResourceInUse")
        if outcome.startswith("4") and not expected:
            unexpected[f"{kind}: {outcome}"] += 1
    for kind in (*KINDS, "all"):
        rows = run.calls if kind == "all" else [c for c in run.calls if c[0] == kind]
        if not rows:
            continue
        answers = Counter(o for _, o, _ in rows)
        latencies = [e for _, _, e in rows]
        table.append(
            {
                "kind": kind,
                "calls": len(rows),
                "2xx": answers.get("200", 0),
                "4xx": sum(v for k, v in answers.items() if k.startswith("4")),
                "5xx": sum(v for k, v in answers.items() if k.startswith("5")),
                "transport": sum(v for k, v in answers.items() if not k[0].isdigit()),
                "p50_ms": 1000 * serve_soak.percentile(latencies, 0.5),
                "p99_ms": 1000 * serve_soak.percentile(latencies, 0.99),
            }
        )
    return {
        "calls": len(run.calls),
        "seconds": round(seconds, 1),
        "rps": len(run.calls) / seconds,
        "outcomes": dict(outcomes),
        "unexpected_4xx": dict(unexpected),
        "by_kind": table,
    }


# -- the server and the run ---------------------------------------------------------------------------------------
class Server:
    """``batchlane server`` in a subprocess on a free loopback port, its store, queue and log under ``root``."""

    def __init__(self, root: Path, workers: int) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHLANE_", "AWS_"))}
        env.update(
            BATCHLANE_HOME=str(root / "home"), BATCHLANE_ACCESS_KEY_ID=KEY, BATCHLANE_SECRET_ACCESS_KEY=SECRET
        )
        command = [sys.executable, "-m", "batchlane", "server", "--port", self.url.rsplit(":", 1)[1]]
        command += [
            "--db",
            str(root / "jobs.db"),
            "--queue",
            f"sqlite:///{root / 'queue.db'}?queue=batchlane-jobs",
        ]
        command += ["--workers", str(workers), "--lease-seconds", "3", "--no-worker"]
        self.log_path = root / "server.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_http(f"{self.url}/ping", timeout=120, process=self.process)
        except RuntimeError:
            raise SystemExit(f"batchlane server exited: {self.log_path.read_text()[-2000:]}") from None
        except TimeoutError:
            self.stop()
            raise SystemExit("batchlane server did not answer /ping within 120 s") from None

    def tracebacks(self) -> int:
        return self.log_path.read_text(errors="replace").count("Traceback (most recent call last)")

    def stop(self) -> None:
        stop_process(self.process, timeout=30)


def load(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    (root / "in").mkdir(parents=True, exist_ok=True)
    lines = [{"inputs": "my card was charged twice"}, {"inputs": "the agent never called back"}]
    (root / "in" / "tickets.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    server = Server(root, args.workers)
    try:
        sm, sqs = clients(server.url)
        sm.create_model(
            ModelName="echo",
            PrimaryContainer={"Image": "batchlane:local", "ModelDataUrl": str(ECHO_MODEL)},
            ExecutionRoleArn="arn:aws:iam::000000000000:role/unused",
        )
        # A visibility timeout longer than the run: a message is redelivered only if it was never deleted.
        queue_url = sqs.create_queue(QueueName="bench-load", Attributes={"VisibilityTimeout": "900"})[
            "QueueUrl"
        ]
        run = Run(root, f"load-{int(time.time())}", queue_url)
        budget = Budget(args.calls, args.max_seconds)
        ready = threading.Barrier(args.clients + 1)
        threads = [
            threading.Thread(
                target=client_loop, args=(run, server.url, budget, args.seed + i, ready), daemon=True
            )
            for i in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        ready.wait()
        budget.deadline = time.monotonic() + args.max_seconds
        load_avg = os.getloadavg()[0]
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        logger.info("%d calls in %.1f s; settling and checking", len(run.calls), seconds)
        result = summarise(run, seconds)
        result["checks"] = check(run, sm, sqs, args.settle_s)
        result["server_tracebacks"] = server.tracebacks()
    finally:
        server.stop()
    result.update(clients=args.clients, workers=args.workers, load_average=round(load_avg, 2))
    return result


def render(result: dict[str, Any], found: list[str]) -> str:
    jobs, messages = result["checks"]["jobs"], result["checks"]["messages"]
    lines = [
        f"Control-plane load ({time.strftime('%Y-%m-%d %H:%M')}): `batchlane server --workers {result['workers']}` "
        f"on loopback (SigV4), {result['clients']} client threads each with its own boto3 session, retries off; "
        f"{result['calls']:,} calls in {result['seconds']:.1f} s = **{result['rps']:.0f} calls/s** while jobs ran "
        f"(the echo model of tests/models/echo, one `batchlane serve` per job). 1-minute load average at the start: "
        f"{result['load_average']}. Latency is the client's: signing, HTTP, parsing.",
        "",
        "| call | calls | 2xx | 4xx | 5xx | transport errors | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["by_kind"]:
        name = "**all**" if row["kind"] == "all" else row["kind"]
        lines.append(
            f"| {name} | {row['calls']:,} | {row['2xx']:,} | {row['4xx']:,} | {row['5xx']:,} | {row['transport']:,} "
            f"| {row['p50_ms']:.0f} | {row['p99_ms']:.0f} |"
        )
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(jobs["by_status"].items()))
    queue_after = messages["queue_after_drain"]
    lines += [
        "",
        f"Answers: {', '.join(f'{k}: {v:,}' for k, v in sorted(result['outcomes'].items()))} (a repeated create of "
        f"an accepted name must answer 400 ResourceInUse; any other 4xx is a defect). Server log tracebacks: "
        f"{result['server_tracebacks']}.",
        "",
        "| check | result |",
        "|---|---|",
        f"| jobs accepted / listed (ListTransformJobs, all pages) | {jobs['accepted']} / {jobs['listed']} |",
        f"| accepted but not listed · listed twice · refused but listed | {len(jobs['lost'])} · "
        f"{len(jobs['listed_twice'])} · {len(jobs['refused_but_listed'])} |",
        f"| repeated creates accepted (a second job under one name) | {len(jobs['second_create_accepted'])} |",
        f"| final states ({jobs['stop_requested_during_load']} stopped during the load, the rest after it) | "
        f"{by_status}; not terminal {jobs['settle_s']:.0f} s later: {len(jobs['not_terminal'])} |",
        f"| Completed jobs without their `.out` | {len(jobs['completed_without_output'])} |",
        f"| messages sent / received and deleted / still in the queue | {messages['sent']} / "
        f"{messages['received_and_deleted']} / {messages['still_in_queue']} |",
        f"| messages lost · received twice · seen after delete | {len(messages['lost'])} · "
        f"{len(messages['received_twice'])} · {len(messages['drained_after_delete'])} |",
        f"| queue after the drain (visible, in flight) | {queue_after['visible']}, {queue_after['in_flight']} |",
        "",
        "Verdict: " + ("; ".join(found) if found else "0 × 5xx, no job and no message lost or duplicated."),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000, help="calls in all (default 5,000)")
    parser.add_argument("--clients", type=int, default=20, help="client threads (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="the server's job workers (default 2)")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop making calls after this long")
    parser.add_argument(
        "--settle-s", type=float, default=300.0, help="how long jobs may take to end after it"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--root", type=Path, default=None, help="keep the server's files here (default: a temp dir)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.root:
        result = load(args, args.root)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-load-") as scratch:
            result = load(args, Path(scratch))
    found = problems(result)
    report = render(result, found)
    print(report)
    if args.json:
        args.json.write_text(json.dumps({**result, "problems": found}, indent=2))
    if not args.no_write:
        import run as run_mod

        path = run_mod.write_results_file(
            report, name="control-plane", title="Control-plane load", script="bench/control_plane_load.py"
        )
        logger.info("written to %s", path)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
