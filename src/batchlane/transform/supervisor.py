"""Keeping a job's model server usable: after a fault of the server (not of the data), restart it with backoff,
within the job's ``max_restarts`` budget, so that only the file that hit the fault fails (docs/transform.md,
"Recovery").

Faults that need a restart (``ServerSupervisor.fault``):

* the server we started has exited (killed, out of memory, ``os._exit`` in user code): nothing more can be answered;
* an invocation timed out (after its retries): ``batchlane serve`` runs user handlers one at a time, so every later
  request would queue behind the stuck one and time out as well;
* a connection failed and ``/ping`` no longer answers 200.

Anything else (a 4xx, a 5xx, an answer that does not fit) is the data's problem: its file fails and the server stays.
A server we did not start (a model's ``serve_url``) cannot be restarted; its faults only fail their file.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from batchlane.errors import ModelLoadError
from batchlane.transform.container import ModelContainer

RESTART_BACKOFF_S = 1.0  # the wait before a run's first restart; each later one waits twice as long
MAX_BACKOFF_S = 30.0
SLEEP_STEP_S = 0.2  # a stop request (or the job's deadline) is noticed this often during the backoff
EXIT_WAIT_S = 0.5  # a dropped connection can come a moment before the dead server is reaped


def backoff_s(restart: int, base_s: float = RESTART_BACKOFF_S) -> float:
    """The wait before the ``restart``-th restart of a run (1-based): 1, 2, 4, ... s, at most ``MAX_BACKOFF_S``."""
    return min(MAX_BACKOFF_S, base_s * 2 ** max(0, restart - 1))


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL`` for a ``Popen.returncode``."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass(frozen=True)
class Fault:
    """Why the model server needs a restart. ``retry_file``: the fault was the server's (it died or stopped
    answering), not the data's, so the file in flight is redone once on the fresh server; after a timeout it is not
    (the same record would most likely hang again)."""

    reason: str
    retry_file: bool


class RestartsExhausted(ModelLoadError):
    """The model server needed one restart more than ``max_restarts`` allows: the job fails."""


class ServerSupervisor:
    """Restarts ``container`` after faults, at most ``max_restarts`` times per run of the job.

    ``on_restart(number, message)`` is called before each restart (the runner logs it and counts it in the job
    store); ``check_interrupt()`` is called while waiting and may raise to give up (a stop, the job's deadline).
    """

    def __init__(
        self,
        container: ModelContainer | None,
        *,
        max_restarts: int,
        on_restart: Callable[[int, str], None],
        check_interrupt: Callable[[], None],
        backoff_base_s: float = RESTART_BACKOFF_S,
    ) -> None:
        self.container = container
        self.max_restarts = max_restarts
        self.on_restart = on_restart
        self.check_interrupt = check_interrupt
        self.backoff_base_s = backoff_base_s
        self.used = 0

    @property
    def active(self) -> bool:
        """Whether there is a server we started, and so one we can restart."""
        return (
            self.container is not None and self.container.restartable and self.container.process is not None
        )

    def fault(self, kind: str | None) -> Fault | None:
        """After a file failed with an invocation failure of ``kind`` (``"timeout"``, ``"connection"``, ...; None
        for other errors): the fault that needs a restart, or None when the server is fine."""
        if not self.active:
            return None
        assert self.container is not None
        code = self.container.exit_code(wait_s=EXIT_WAIT_S if kind == "connection" else 0.0)
        if code is not None:
            return Fault(f"the model container {describe_exit(code)}", retry_file=True)
        if kind == "timeout":
            return Fault(
                "an invocation timed out, and the server answers one request at a time", retry_file=False
            )
        if kind == "connection" and not self.container.ping():
            return Fault("the model container stopped answering /ping", retry_file=True)
        return None

    def exited(self) -> Fault | None:
        """Between files: the fault if the server has exited since the last file."""
        if not self.active:
            return None
        assert self.container is not None
        code = self.container.exit_code()
        return None if code is None else Fault(f"the model container {describe_exit(code)}", retry_file=False)

    def can_restart(self) -> bool:
        return self.used < self.max_restarts

    def restart(self, fault: Fault, where: str) -> str:
        """Wait the backoff, restart the server and return its new base URL; ``RestartsExhausted`` when the budget
        is spent. ``where`` says when the fault was found, for the messages: ``while transforming <uri>``."""
        assert self.container is not None
        if not self.can_restart():
            budget = (
                "restarts are off (max_restarts=0)"
                if self.max_restarts == 0
                else f"its {self.max_restarts} restarts are used up (max_restarts={self.max_restarts})"
            )
            raise RestartsExhausted(f"{fault.reason} {where}, and {budget}")
        self.used += 1
        delay = backoff_s(self.used, self.backoff_base_s)
        self.on_restart(
            self.used,
            f"restarting the model server (restart {self.used} of {self.max_restarts} in this run) in {delay:g} s: "
            f"{fault.reason} {where}",
        )
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            self.check_interrupt()
            time.sleep(min(SLEEP_STEP_S, left))
        self.check_interrupt()
        return self.container.restart(f"restart {self.used}: {fault.reason}")
