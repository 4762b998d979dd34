"""Helpers shared by the worker tests (this module has no tests): a model whose predictions can be held back, input
folders, seed-style messages, polling.

The model needs no ML framework, so a transform job costs one ``batchlane serve`` start (~2 s on 2 cores): its
``predict_fn`` upper-cases each CSV line and, while a ``hold`` file exists in the model folder, waits for a
``release`` file. Tests use that to catch a job "in progress" without sleeping for a fixed time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchlane.queue.launcher import RequestDefaults

INFERENCE_PY = """\
import os
import time


def model_fn(model_dir):
    return model_dir


def input_fn(body, content_type):
    text = body.decode() if isinstance(body, bytes) else body
    return [line for line in text.splitlines() if line]


def predict_fn(rows, model_dir):
    while os.path.exists(os.path.join(model_dir, "hold")) and not os.path.exists(os.path.join(model_dir, "release")):
        time.sleep(0.05)
    return [row.upper() for row in rows]


def output_fn(prediction, accept):
    return "".join(row + "\\n" for row in prediction)
"""

# What the seed's function would hard-code: CSV lines in, one result line per record out.
CSV_DEFAULTS = RequestDefaults(content_type="text/csv", split_type="Line", accept="text/csv")


def make_model(folder: Path, *, hold: bool = False) -> Path:
    """A model folder with the upper-casing ``inference.py``; ``hold=True`` makes predictions wait for ``release``."""
    (folder / "code").mkdir(parents=True, exist_ok=True)
    (folder / "code" / "inference.py").write_text(INFERENCE_PY)
    if hold:
        (folder / "hold").touch()
    return folder


def release(model_dir: Path) -> None:
    (model_dir / "release").touch()


def make_inputs(folder: Path, lines: tuple[str, ...] = ("alpha", "beta")) -> Path:
    """``folder/part-1.csv`` with ``lines``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-1.csv").write_text("".join(line + "\n" for line in lines))
    return folder


def seed_body(input_path: str, output_path: str, **extra: Any) -> str:
    """The seed client's message (what ``boto3 sqs.send_message(MessageBody=json.dumps(...))`` sends)."""
    body = {
        "input_path": input_path,
        "output_path": output_path,
        "instance_type": "ml.m5.xlarge",
        "instance_count": 1,
    }
    return json.dumps({**body, **extra})


def reordered(body: str) -> str:
    """The same JSON object with its keys in reverse order and different whitespace."""
    data = json.loads(body)
    return json.dumps(dict(reversed(list(data.items()))), indent=1)


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class FakeClock:
    """A settable Unix clock for the embedded queue (leases and backoff without sleeping)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
