"""An echo model for transform tests: one result per input record, in order, carrying the record's text.

No torch, no weights: ``model_fn`` returns the settings below, ``transform_fn`` answers by content type:

* ``text/csv``: one CSV row per record, the fields the model saw joined with ``|`` (``0.5,0.7`` → ``0.5|0.7``).
  A header row (first field ``id``) gets no result, as a CSV decoder that reads headers would do.
* ``application/jsonlines``: one JSON line per record, ``{"echo": <record>}``.
* ``application/json``: a JSON array, one ``{"echo": <record>}`` per non-blank line.
* ``application/x-recordio`` / ``application/x-tfrecord``: the framed records are parsed (MultiRecord keeps the
  framing); a body that is not framed is one bare record (SingleRecord removes the framing). One line per record:
  ``framed:<text>`` or ``bare:<text>``.
* anything else: one line ``echo:<line>`` per line.

Records containing these words change behaviour:

* ``poison``: raise ``ValueError`` (HTTP 500 from the container).
* ``badrequest``: raise an error with ``status_code = 400`` (HTTP 400).
* ``flaky``: HTTP 500 for the first ``ECHO_FLAKY_FAILS`` (default 1) calls containing it, then succeed.
* ``slow``: sleep ``ECHO_SLOW_S`` seconds (default 3) before answering.
* ``half``: answer one result fewer than the records sent (a count mismatch).
* ``crash``: the server process exits at once with status 3 (a model server that dies mid-job).

Environment: ``ECHO_LOG`` (a file: one JSON line per call with the content type, body, record count,
Transfer-Encoding header and the three ``X-Batchlane-Source-*`` headers as ``source``; bodies over 2000 characters are logged by size only), ``ECHO_STATE`` (a folder for the flaky counters), ``ECHO_BATCH_SLEEP_S`` (sleep per call),
``ECHO_SLOW_EXIT_S`` (on SIGTERM, wait this long before exiting: a model server that is slow to stop).
"""

import csv
import io
import json
import os
import threading
import time
from pathlib import Path

from batchlane.errors import BadInput
from batchlane.transform.split import iter_records


class ClientMistake(Exception):
    status_code = 400


def _exit_slowly(seconds):
    # A non-daemon thread that outlives the main thread by ``seconds``: the interpreter waits for it at exit, so the
    # server takes that long to end after SIGTERM, and never longer.
    threading.Thread(
        target=lambda: (threading.main_thread().join(), time.sleep(seconds)), daemon=False
    ).start()


def model_fn(model_dir):
    if os.environ.get("ECHO_SLOW_EXIT_S"):
        _exit_slowly(float(os.environ["ECHO_SLOW_EXIT_S"]))
    return {
        "log": os.environ.get("ECHO_LOG"),
        "state": os.environ.get("ECHO_STATE"),
        "slow_s": float(os.environ.get("ECHO_SLOW_S", "3")),
        "batch_sleep_s": float(os.environ.get("ECHO_BATCH_SLEEP_S", "0")),
        "flaky_fails": int(os.environ.get("ECHO_FLAKY_FAILS", "1")),
    }


def _framed(body, split_type):
    try:
        return [r.data for r in iter_records(io.BytesIO(body), split_type)]
    except BadInput:
        return None


def _records(body, content_type):
    """(records as text, their outputs before formatting, the body's framing tag)."""
    if content_type in ("application/x-recordio", "application/x-tfrecord"):
        split = "RecordIO" if content_type.endswith("recordio") else "TFRecord"
        raw = body if isinstance(body, bytes) else body.encode()
        framed = _framed(raw, split)
        if framed:
            return [r.decode("utf-8", "replace") for r in framed], "framed"
        return [raw.decode("utf-8", "replace")], "bare"
    text = body if isinstance(body, str) else body.decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if content_type == "application/json":
        lines = [line for line in lines if line.strip()]
    return lines, None


def _check(model, records):
    joined = "\n".join(records)
    if "crash" in joined:
        os._exit(3)
    if "badrequest" in joined:
        raise ClientMistake("bad request: a record says badrequest")
    if "poison" in joined:
        raise ValueError("poisoned record")
    if "flaky" in joined and model["state"]:
        counter = Path(model["state"]) / "flaky-count"
        seen = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(seen + 1))
        if seen < model["flaky_fails"]:
            raise RuntimeError(f"flaky failure {seen + 1}")
    if "slow" in joined:
        time.sleep(model["slow_s"])


def transform_fn(model, input_data, content_type, accept, context):
    records, framing = _records(input_data, content_type)
    if model["log"]:
        raw = input_data if isinstance(input_data, str) else input_data.decode("utf-8", "replace")
        entry = {
            "content_type": content_type,
            "accept": accept,
            "body": raw if len(raw) <= 2000 else None,
            "bytes": len(raw),
            "records": len(records),
            "transfer_encoding": context.get_request_header(0, "Transfer-Encoding"),
            "source": [
                context.get_request_header(0, name)
                for name in ("X-Batchlane-Source-Key", "X-Batchlane-Record-Index", "X-Batchlane-Record-Count")
            ],
        }
        with open(model["log"], "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
    if model["batch_sleep_s"]:
        time.sleep(model["batch_sleep_s"])
    _check(model, records)
    if any("half" in r for r in records) and len(records) > 1:
        records = records[:-1]
    if content_type == "text/csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for row in csv.reader(records):
            if row[:1] != ["id"]:
                writer.writerow(["|".join(row)])
        return out.getvalue(), "text/csv"
    if content_type == "application/jsonlines":
        return "".join(json.dumps({"echo": json.loads(r)}) + "\n" for r in records), "application/jsonlines"
    if content_type == "application/json":
        return json.dumps([{"echo": json.loads(r)} for r in records]), "application/json"
    if framing:
        return "".join(f"{framing}:{r}\n" for r in records), "text/plain"
    return "".join(f"echo:{r}\n" for r in records), "text/plain"
