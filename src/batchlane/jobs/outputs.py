"""Who may write where: the output-prefix rules a new job must pass (docs/reliability.md).

* ``check_output_outside_input``: an ``S3Prefix`` job's output must not lie inside its raw input prefix (a later
  run of the same job would read this one's ``.out`` objects back as input) nor hold the input prefix in its folder.
  A ``ManifestFile`` names its objects one by one, so nothing is listed back and the rule does not apply.
* ``conflicting_jobs``: the active (InProgress/Stopping) jobs whose output prefix overlaps a given one. The store
  calls it inside the transaction that inserts a job, so of any number of concurrent creates on one prefix exactly
  one is accepted.

Both compare canonical locations with the URI grammar's one overlap rule (``storage.uri``), so ``/data/out``, ``file:///data/out/`` and a
symlink to it are one place, as are ``s3://b/k`` and its ``https://`` spellings.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from batchlane.aws_names import canonical_job_name
from batchlane.errors import ValidationError
from batchlane.jobs.records import JobRecord
from batchlane.jobs.state import ACTIVE
from batchlane.storage.uri import outputs_overlap, prefix_relation

OUTPUT_FIELD = "TransformOutput.S3OutputPath"


def output_path(request: Mapping[str, Any]) -> str | None:
    """The request's ``TransformOutput.S3OutputPath``, or None if it has none."""
    value = (request.get("TransformOutput") or {}).get("S3OutputPath")
    return value if isinstance(value, str) else None


def check_output_outside_input(request: Mapping[str, Any]) -> None:
    """``ValidationError`` naming ``TransformOutput.S3OutputPath`` if the output overlaps the S3Prefix input."""
    source = ((request.get("TransformInput") or {}).get("DataSource") or {}).get("S3DataSource") or {}
    output = output_path(request)
    if source.get("S3DataType") != "S3Prefix" or not isinstance(source.get("S3Uri"), str) or output is None:
        return
    relation = prefix_relation(source["S3Uri"], output)
    if relation == "inside":
        raise ValidationError(
            f"{OUTPUT_FIELD} {output!r} is inside the input prefix {source['S3Uri']!r} (inputs are matched as a "
            "raw prefix): this job's outputs would be read back as inputs; choose an output outside the input",
            field=OUTPUT_FIELD,
        )
    if relation == "contains":
        raise ValidationError(
            f"{OUTPUT_FIELD} {output!r} contains the input prefix {source['S3Uri']!r}: outputs would land among "
            "the inputs; choose prefixes that do not overlap",
            field=OUTPUT_FIELD,
        )


def _overlaps(first: str, second: str) -> bool:
    try:
        return outputs_overlap(first, second)
    except ValidationError:  # a row written before today's URI rules: compare the raw strings as before
        return first.startswith(second) or second.startswith(first)


def conflicting_jobs(
    rows: Iterable[sqlite3.Row], output_uri: str, *, exclude: str | None = None
) -> list[JobRecord]:
    """The active jobs among ``rows`` (``jobs`` table rows) whose output prefix overlaps ``output_uri``, other than
    ``exclude`` (a job name, compared case-insensitively)."""
    found = []
    for row in rows:
        record = JobRecord._from_row(row)
        other = output_path(record.request)
        if record.status not in ACTIVE or other is None:
            continue
        if exclude is not None and canonical_job_name(record.name) == canonical_job_name(exclude):
            continue
        if _overlaps(output_uri, other):
            found.append(record)
    return found


def busy_message(output_uri: str, holder: JobRecord) -> str:
    """The one-line refusal for a create whose output an active job holds."""
    return (
        f"output path {output_uri} overlaps the output of active job {holder.name}; two jobs writing one prefix "
        "would overwrite each other's .out objects"
    )
