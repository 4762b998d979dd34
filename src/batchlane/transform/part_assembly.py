"""Assembling a file's committed parts into its ``<key>.out`` (docs/parts.md), and removing the staged part
objects once the file is done (or failed).

``assemble`` streams the staged part objects, in part order, through the output store's atomic writer (a temp file
and rename on a folder, a verified PUT or multipart upload on S3), so the ``.out`` appears whole or not at all and
equals the unsplit run's bytes: every part starts at a mini-batch boundary of the whole-file run and ``Assembler``
terminates each chunk on its own, so concatenation adds and drops nothing. The consolidated results of the parts
(``JobOptions.consolidate``) are concatenated the same way into the file's local consolidated part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from batchlane.errors import BatchlaneError
from batchlane.storage.base import ObjectStore
from batchlane.storage.local import LocalStore
from batchlane.transform.part_io import local_atomic
from batchlane.transform.parts import STAGING_FOLDER, consolidated_staging_key, staging_key, staging_prefix

COPY_BUFFER = 1 << 20


def assemble(
    out_store: ObjectStore,
    output_key: str,
    job: str,
    count: int,
    *,
    consolidated_path: Path | None = None,
    check: Callable[[], None] | None = None,
) -> None:
    """Write ``output_key`` from the ``count`` staged parts of job ``job`` (all must be committed), and with
    ``consolidated_path`` the file's consolidated results from the parts' staged ``.jsonl`` objects. ``check`` is
    called between chunks; what it raises abandons the ``.out`` (nothing becomes visible)."""
    with out_store.writer(output_key) as out:
        for number in range(count):
            with out_store.open(staging_key(output_key, job, number)) as part:
                _copy(part, out, check)
    if consolidated_path is not None:
        with local_atomic(consolidated_path) as out:
            for number in range(count):
                with out_store.open(consolidated_staging_key(output_key, job, number)) as part:
                    _copy(part, out, check)


def _copy(source: BinaryIO, target: BinaryIO, check: Callable[[], None] | None) -> None:
    while chunk := source.read(COPY_BUFFER):
        if check is not None:
            check()
        target.write(chunk)


def remove_staged(out_store: ObjectStore, output_key: str, job: str, count: int) -> None:
    """Delete the staged part objects of one file (best effort: a leftover is only wasted space, never output)."""
    for number in range(count):
        for key in (staging_key(output_key, job, number), consolidated_staging_key(output_key, job, number)):
            with contextlib.suppress(BatchlaneError, OSError):
                out_store.delete(key)
    if isinstance(out_store, LocalStore):
        # A folder is no object on S3, but on disk the emptied staging folders would stay behind.
        folder = out_store.check_key(staging_prefix(output_key, job), prefix=True).parent
        while folder.name != STAGING_FOLDER and folder != out_store.root:
            with contextlib.suppress(OSError):
                folder.rmdir()
            folder = folder.parent
        with contextlib.suppress(OSError):
            folder.rmdir()
