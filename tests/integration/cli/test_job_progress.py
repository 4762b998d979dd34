"""The progress display of a job run in a terminal: a "starting model (N s)" phase while the container starts, docs/s
without the start-up time, and log lines printed above the bar rather than into it."""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import Path

import pytest
from rich.console import Console

from batchlane.cli.foreground import JobProgress, exit_code
from batchlane.engines import get_engine
from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from tests.models import transform_request


def _terminal() -> tuple[Console, io.StringIO]:
    sink = io.StringIO()
    return Console(file=sink, force_terminal=True, width=200), sink


def _status(progress: JobProgress) -> str:
    """What the bar's status column shows right now."""
    column = progress.bar.columns[2]
    return str(column.render(progress.bar.tasks[0]))


@pytest.mark.slow
def test_the_status_goes_from_start_up_to_this_runs_rate() -> None:
    console, _ = _terminal()
    with JobProgress(False, console=console) as progress:
        progress("start", {"files": 4, "bytes": 100, "done": 1})
        assert _status(progress) == "1/4 files"
        began = time.monotonic()
        progress("starting", {})
        time.sleep(1.1)
        assert re.fullmatch(r"starting model \(\d+ s\)", _status(progress))
        assert _status(progress) != "starting model (0 s)"
        progress("ready", {"startup_s": 1.1})
        progress("batch", {"records": 30, "failed": 0})
        time.sleep(0.3)
        progress("file", {"key": "a", "state": "done"})
        # The rate counts the time since the model was ready, not the 1.1 s start-up before it.
        elapsed = time.monotonic() - began
        assert progress.processing_s <= elapsed - 1.1
        assert progress.docs_per_second == pytest.approx(30 / progress.processing_s, rel=0.05)
        assert progress.docs_per_second > 2 * 30 / elapsed
        assert _status(progress).startswith("2/4 files  30 records (")
        progress.on_signal(2)
        assert _status(progress) == "stopping: abandoning the file in flight (Ctrl-C again aborts at once)"
    assert progress.startup_s == 1.1


def test_log_lines_go_through_the_console_while_the_bar_is_live(capsys: pytest.CaptureFixture[str]) -> None:
    console, sink = _terminal()
    root = logging.getLogger()
    before = list(root.handlers)
    with JobProgress(False, console=console):
        logging.getLogger("batchlane.test").warning("a line for the user")
    assert "a line for the user" in sink.getvalue()
    assert "a line for the user" not in capsys.readouterr().err
    assert root.handlers == before


@pytest.mark.slow
def test_a_real_job_shows_the_start_up_phase(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.models import register_echo

    store = JobStore(tmp_path / "jobs.db")
    register_echo(store)
    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.txt").write_text("x\ny\n")
    record = get_engine("local", store).submit(
        transform_request("shown", f"{tmp_path}/in/", f"{tmp_path}/out/")
    )
    console, sink = _terminal()
    logging.getLogger("batchlane").setLevel(logging.INFO)

    with JobProgress(False, console=console) as progress:
        final = get_engine("local", store).run(record.name, on_progress=progress)

    assert final.status is JobStatus.COMPLETED
    shown = sink.getvalue()
    assert "starting model (" in shown
    assert "starting model container:" in shown  # the container's log line, printed above the bar
    assert "starting model container:" not in capsys.readouterr().err
    assert progress.records == 2 and progress.startup_s > 0
    assert exit_code(final.status) == 0


@pytest.mark.parametrize(
    ("status", "signum", "code"),
    [
        (JobStatus.COMPLETED, None, 0),
        (JobStatus.FAILED, None, 1),
        (JobStatus.STOPPED, None, 3),
        (JobStatus.STOPPED, 2, 130),
        (JobStatus.STOPPED, 15, 143),
        (JobStatus.COMPLETED, 2, 0),
    ],
)
def test_exit_codes(status: JobStatus, signum: int | None, code: int) -> None:
    assert exit_code(status, signum) == code
