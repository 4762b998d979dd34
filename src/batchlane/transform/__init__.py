"""The batch transform job. This package's top level re-exports the pure core (no I/O, no torch or httpx):

* ``spec``: ``validate_request``; ``options``: ``validate_options``, ``JobOptions``; ``params``: ``resolve`` →
  ``EffectiveParams``
* ``split``: ``iter_records``, ``open_decompressed``, ``frame``, ``Record``
* ``plan``: ``pack`` → ``MiniBatch``, ``plan_job`` → ``FilePlan``, ``prefix_overlap``
* ``invoke``: ``RetryPolicy`` (the retry rule; its invokers import httpx only when built)
* ``jsonpath``: ``parse`` → ``JsonPath``
* ``dataprocessing``: ``DataProcessor``, ``split_response``, ``join``
* ``assemble``: ``Assembler``, ``error_row``, ``consolidated_line``

The shell (``HttpInvoker``, ``in_process``, ``container``, ``runner``) is imported from its own module.
"""

from batchlane.transform.assemble import Assembler, consolidated_line, error_row
from batchlane.transform.dataprocessing import DataProcessor, join, split_response
from batchlane.transform.invoke import RetryPolicy
from batchlane.transform.jsonpath import JsonPath
from batchlane.transform.jsonpath import parse as parse_jsonpath
from batchlane.transform.options import JobOptions, validate_options
from batchlane.transform.params import EffectiveParams, container_environment, resolve
from batchlane.transform.plan import FilePlan, MiniBatch, pack, plan_job, prefix_overlap
from batchlane.transform.spec import CreateTransformJobRequest, canonical_uri, validate_request
from batchlane.transform.split import Record, frame, iter_records, open_decompressed

__all__ = [
    "Assembler",
    "CreateTransformJobRequest",
    "DataProcessor",
    "EffectiveParams",
    "FilePlan",
    "JobOptions",
    "JsonPath",
    "MiniBatch",
    "Record",
    "RetryPolicy",
    "canonical_uri",
    "consolidated_line",
    "container_environment",
    "error_row",
    "frame",
    "iter_records",
    "join",
    "open_decompressed",
    "pack",
    "parse_jsonpath",
    "plan_job",
    "prefix_overlap",
    "resolve",
    "split_response",
    "validate_options",
    "validate_request",
]
