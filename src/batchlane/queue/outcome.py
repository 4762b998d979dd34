"""What a queue worker did with each message (``Action``, ``Outcome``) and over a run (``WorkerStats``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    """What the worker did with a message."""

    DONE = "done"  # job finished (run_jobs) or started (detached); message deleted
    REQUEUED = "requeued"  # job Failed; the next attempt was sent; message deleted
    DEAD_LETTERED = "dead_lettered"  # permanent error; moved to the dead-letter queue with the reason
    RETRY = "retry"  # transient error; released for redelivery after a backoff
    LEASE_LOST = "lease_lost"  # the lease ran out (another consumer may hold it): message left alone
    RELEASED = "released"  # the worker was stopping: released untouched for another worker


@dataclass(frozen=True)
class Outcome:
    """The result of ``Worker.process``: the action, the job (if one was named) and its status, and why."""

    message_id: str
    action: Action
    job_name: str | None = None
    job_status: str | None = None
    reason: str | None = None


@dataclass
class WorkerStats:
    """What ``Worker.work`` did: messages received, outcomes by action, jobs resumed at start, elapsed time."""

    received: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    outcomes: list[Outcome] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.actions[outcome.action.value] += 1
        self.outcomes.append(outcome)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "actions": dict(self.actions),
            "recovered": list(self.recovered),
            "elapsed_s": round(self.elapsed_s, 3),
            "outcomes": [
                {k: (v.value if isinstance(v, Action) else v) for k, v in vars(o).items()}
                for o in self.outcomes
            ],
        }
