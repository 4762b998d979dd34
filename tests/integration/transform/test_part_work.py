"""Parts run as self-contained work (``transform.part_work``), as an engine with workers elsewhere runs them: the
work and its report cross a pickle, the parts run out of order, only the driver writes the job store, and the
assembled ``.out`` and counters equal the local engine's unsplit run."""

from __future__ import annotations

import asyncio
import logging
import pickle
from pathlib import Path

import pytest

from batchlane.engines import get_engine
from batchlane.jobs.store import JobStore
from batchlane.storage.uri import open_store
from batchlane.transform.context import StoreContext
from batchlane.transform.in_process import InProcessModel
from batchlane.transform.options import JobOptions
from batchlane.transform.params import resolve
from batchlane.transform.part_assembly import remove_staged
from batchlane.transform.part_work import (
    PartJob,
    PartWork,
    apply_report,
    finish_file,
    store_uri,
    transform_part,
)
from batchlane.transform.parts import Part, plan_parts
from batchlane.transform.spec import validate_request
from tests.models import ECHO_DIR, ECHO_ENV, register_echo, run_job_in_process, transform_request, tree


@pytest.fixture()
def store(tmp_path: Path) -> JobStore:
    store = JobStore(tmp_path / "jobs.db")
    register_echo(store)
    return store


def test_parts_run_out_of_order_as_picklable_work_equal_the_unsplit_run(
    store: JobStore, tmp_path: Path
) -> None:
    data = b"".join(f'{{"id": {i}, "text": "{"t" * (i % 9)}"}}\n'.encode() for i in range(400))
    (tmp_path / "in").mkdir()
    (tmp_path / "in/big.jsonl").write_bytes(data)
    fields = {
        "content_type": "application/jsonlines",
        "accept": "application/jsonlines",
        "assemble_with": "Line",
        "BatchStrategy": "SingleRecord",
        "DataProcessing": {"InputFilter": "$.text", "JoinSource": "Input"},
    }
    consolidate = {"consolidate": str(tmp_path / "whole.jsonl")}
    reference = run_job_in_process(
        store, transform_request("whole", f"{tmp_path}/in/", f"{tmp_path}/ref/", **fields), consolidate
    )

    # The driver: a job claimed by this process, its file planned and its parts recorded once.
    body = transform_request("driven", f"{tmp_path}/in/", f"{tmp_path}/out/", **fields)
    options = JobOptions(consolidate=str(tmp_path / "driven.jsonl"))
    get_engine("local", store).submit(body, options)
    assert store.claim("driven", "driver", lease_s=60)
    in_store, in_prefix = open_store(f"{tmp_path}/in/")
    out_store, out_prefix = open_store(f"{tmp_path}/out/")
    key = f"{in_prefix}big.jsonl"
    store.add_files("driven", [(key, f"{out_prefix}big.jsonl.out", len(data))], owner="driver")
    checkpoint = store.files("driven")[0]
    params = resolve(validate_request(body))
    parts = plan_parts(in_store, key, len(data), params, options, budget=1500)
    assert len(parts) > 3
    context = StoreContext(
        store=store,
        name="driven",
        owner="driver",
        log=logging.getLogger("batchlane.job.driven"),
        consolidated_folder=tmp_path / "driven.consolidate",
        check_interrupt=lambda: None,
        is_halted=lambda: False,
        on_progress=lambda event, data: None,
    )
    stored = context.plan_file_parts(key, parts)

    # The workers: each part is pickled work; the model is loaded in this process; the parts finish in reverse.
    job = pickle.loads(
        pickle.dumps(PartJob("driven", params, options, store_uri(in_store), store_uri(out_store)))
    )
    works = [pickle.dumps(PartWork(checkpoint, Part.of(row))) for row in stored]
    with InProcessModel(ECHO_DIR, env=ECHO_ENV) as model:

        async def run_all() -> list[bytes]:
            reports = []
            for work in reversed(works):
                invoker = model.invoker(params)
                try:
                    reports.append(pickle.dumps(await transform_part(job, pickle.loads(work), invoker)))
                finally:
                    await invoker.aclose()
            return reports

        reports = asyncio.run(run_all())
    assert store.part_counts("driven") == (0, len(parts))  # a worker never writes the job store
    for report in reports:
        apply_report(context, pickle.loads(report))

    outcome = finish_file(context, checkpoint, store.parts("driven", key), in_store, out_store, options)
    context.file_done(key, records=outcome.records, failed=outcome.failed)
    remove_staged(out_store, checkpoint.output_key, "driven", len(parts))

    assert tree(tmp_path / "out") == tree(tmp_path / "ref")
    record = store.get_job("driven")
    assert (
        (record.records_done, record.bytes_done)
        == (reference.records_done, reference.bytes_done)
        == (400, len(data))
    )
    assert store.part_counts("driven") == (len(parts), len(parts))
    # The file's consolidated results, where the runner's job-level consolidation reads them from.
    assert context.consolidated_path(key).read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
