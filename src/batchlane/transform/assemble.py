"""Output assembly for one ``.out`` file (``AssembleWith``), error rows, and consolidated JSON Lines entries.

``AssembleWith=None``: chunks are concatenated byte for byte. ``AssembleWith=Line``: a ``\\n`` follows each chunk
unless it already ends with one; an empty chunk becomes an empty line, so line positions stay aligned with
records. A chunk is a response body, or one record's output when ``DataProcessor.handle`` returns per-record
outputs. **Deviation** (docs/transform.md): SDK local mode always appends ``\\n`` per response, doubling the newline of
bodies that end in one; we never double it, which is what the API doc's "newline at the end of every transformed
record" asks for.

Error rows (``JobOptions.on_record_error="error-row"``; one line each, in the failed record's place):

* JSON / JSON Lines output: ``{"SageMakerError":{"line":3,"message":"..."}}``
* CSV output: ``ERROR,line 3: ...`` (the ``ERROR`` placeholder the AWS troubleshooting guide suggests, with the
  line and reason in the second column, quoted when it holds a comma or a quote)
* anything else: ``ERROR: line 3: ...``

Messages are collapsed onto one line and cut at 1000 characters. Error rows always end with ``\\n`` under
``AssembleWith=Line``; under ``None`` they are concatenated like any chunk.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from batchlane import content_types
from batchlane.transform.split import Record

MAX_MESSAGE_CHARS = 1000


class Assembler:
    """Turns chunks into output bytes, in order. Stateless per chunk, so it can be used across resumes."""

    def __init__(self, assemble_with: str | None = "None", content_type: str | None = None) -> None:
        if assemble_with not in (None, "None", "Line"):
            raise ValueError(f"AssembleWith must be None or Line, got {assemble_with!r}")
        self.lines = assemble_with == "Line"
        self.content_type = content_type

    def add(self, chunk: bytes) -> bytes:
        """The bytes to write for one chunk."""
        if self.lines and not chunk.endswith(b"\n"):
            return chunk + b"\n"
        return chunk

    def feed(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """``add`` over many chunks."""
        for chunk in chunks:
            yield self.add(chunk)

    def error(self, record: Record | int, message: str) -> bytes:
        """An error row for a record (or a 1-based line number), assembled like a chunk."""
        line = record.line if isinstance(record, Record) else record
        return self.add(error_row(line, message, self.content_type))


def _one_line(message: str) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def error_row(line: int, message: str, content_type: str | None) -> bytes:
    """One error row (no terminator) in the output's format (module docstring)."""
    media = content_types.normalize(content_type)
    text = _one_line(message)
    if media in (content_types.JSON, content_types.JSONLINES):
        row = {"SageMakerError": {"line": line, "message": text}}
        return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if media == content_types.CSV:
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(["ERROR", f"line {line}: {text}"])
        return out.getvalue().encode("utf-8")
    return f"ERROR: line {line}: {text}".encode()


def _output_value(output: bytes, content_type: str | None) -> Any:
    media = content_types.normalize(content_type)
    text = output.decode("utf-8", "replace").rstrip("\r\n")
    if media in (content_types.JSON, content_types.JSONLINES):
        try:
            return json.loads(text)
        except ValueError:
            return text
    if media == content_types.CSV:
        rows = list(csv.reader(io.StringIO(text, newline="")))
        return rows[0] if len(rows) == 1 else text
    return text


def consolidated_line(
    input_key: str,
    record: Record,
    *,
    output: bytes | None = None,
    error: str | None = None,
    content_type: str | None = None,
) -> bytes:
    """One line (with ``\\n``) of the ``--consolidate`` JSON Lines file.

    ``{"input_key": k, "record_index": i, "line": n, "output": v}`` where ``v`` is the parsed JSON result for JSON
    types, the list of fields for CSV, else the text; or ``..., "error": message}`` for a failed record.
    """
    entry: dict[str, Any] = {"input_key": input_key, "record_index": record.index, "line": record.line}
    if error is not None:
        entry["error"] = _one_line(error)
    else:
        entry["output"] = _output_value(output or b"", content_type)
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
