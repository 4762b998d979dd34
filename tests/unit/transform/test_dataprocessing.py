"""DataProcessing per record: parse/serialise, filters, response splitting, joins, and the docs/transform.md examples."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from batchlane.errors import BadInput, UnsupportedContentType
from batchlane.transform import jsonpath
from batchlane.transform.assemble import Assembler
from batchlane.transform.dataprocessing import (
    DataProcessor,
    ResultCountMismatch,
    apply_input_filter,
    apply_output_filter,
    join,
    parse_record,
    serialize_record,
    split_response,
)
from batchlane.transform.params import resolve
from batchlane.transform.plan import pack
from batchlane.transform.spec import validate_request
from batchlane.transform.split import Record, iter_records

CSV, JSON, JSONL = "text/csv", "application/json", "application/jsonlines"


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        (b"1,2,3", CSV, ["1", "2", "3"]),
        (b'id,"a, b","say ""hi"""', CSV, ["id", "a, b", 'say "hi"']),
        (b"", CSV, []),
        (b"a,,b", CSV, ["a", "", "b"]),
        ("é,ü,✓".encode(), CSV, ["é", "ü", "✓"]),
        (b"\xef\xbb\xbfid,x", CSV, ["id", "x"]),
        ("é".encode("latin-1"), "text/csv; charset=latin-1", ["é"]),
        (b'{"a":1,"b":[1,2]}', JSON, {"a": 1, "b": [1, 2]}),
        (b"[1,2,3]", JSONL, [1, 2, 3]),
        (b'"text"', "application/x-jsonlines", "text"),
        ('{"k":"ü"}'.encode(), JSON, {"k": "ü"}),
    ],
)
def test_parse_record(data: bytes, content_type: str, expected: Any) -> None:
    assert parse_record(data, content_type) == expected


@pytest.mark.parametrize(
    ("data", "content_type", "error", "match"),
    [
        (b'{"a":', JSON, BadInput, "not valid JSON"),
        (b'{"a":1}{"b":2}', JSONL, BadInput, "Extra data"),
        (b"\xff\xfe1,2", CSV, BadInput, "not valid utf-8 text at byte 0"),
        (b'a,"b', CSV, BadInput, "not a valid CSV row"),
        (b"a\nb", CSV, BadInput, "single row"),
        (b"1", "application/x-npy", UnsupportedContentType, "DataProcessing supports"),
        (b"1", "text/csv; charset=nope", BadInput, "unknown charset"),
    ],
)
def test_parse_record_errors(data: bytes, content_type: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_record(data, content_type)


@pytest.mark.parametrize(
    ("value", "content_type", "expected"),
    [
        (["1", "2", "3"], CSV, b"1,2,3"),
        (["a, b", 'say "hi"', ""], CSV, b'"a, b","say ""hi""",'),
        ("id1", CSV, b"id1"),
        ([1, 2.5, True, None, [1, 2], {"k": "v"}], CSV, b'1,2.5,true,,"[1,2]","{""k"":""v""}"'),
        (["é", "line\nbreak"], CSV, 'é,"line\nbreak"'.encode()),
        ({"a": 1, "b": [1, 2]}, JSON, b'{"a":1,"b":[1,2]}'),
        ({"k": "ü"}, JSONL, '{"k":"ü"}'.encode()),
        ([1, 2], JSONL, b"[1,2]"),
    ],
)
def test_serialize_record(value: Any, content_type: str, expected: bytes) -> None:
    assert serialize_record(value, content_type) == expected


def test_serialize_object_as_csv_is_refused() -> None:
    with pytest.raises(BadInput, match="cannot be written as a CSV row"):
        serialize_record({"a": 1}, CSV)


@pytest.mark.parametrize(
    ("data", "expr", "content_type", "expected"),
    [
        (b'id1,"1, 0",2', "$[1:]", CSV, b'"1, 0",2'),
        (b"id1,1,2", "$", CSV, b"id1,1,2"),
        (b'{"a" : 1}', "$", JSON, b'{"a" : 1}'),  # identity: bytes untouched
        (b'{"id":1,"features":[1,2]}', "$.features", JSON, b"[1,2]"),
        (b'{"id":1,"features":[1,2]}', "$.id", JSONL, b"1"),
        (b"a,b,c,d,e,f", "$[1:4]", CSV, b"b,c,d,e"),
        (b"a,b,c,d,e,f", "$[0:1,4:]", CSV, b"a,b,e,f"),
    ],
)
def test_filters(data: bytes, expr: str, content_type: str, expected: bytes) -> None:
    path = jsonpath.parse(expr)
    assert apply_input_filter(data, path, content_type) == expected
    assert apply_output_filter(data, path, content_type) == expected


@pytest.mark.parametrize(
    ("body", "content_type", "expected", "results"),
    [
        (b"1\n2\n3\n", CSV, 3, [b"1", b"2", b"3"]),
        (b"1\n2\n3", CSV, 3, [b"1", b"2", b"3"]),
        (b"1\r\n2\r\n", CSV, 2, [b"1", b"2"]),
        (b"a,b\nc,d\n", CSV, 2, [b"a,b", b"c,d"]),
        (b"\n\n", CSV, 2, [b"", b""]),
        (b'{"a":1}\n{"a":2}\n', JSONL, 2, [b'{"a":1}', b'{"a":2}']),
        (b"x\ny", "text/plain", 2, [b"x", b"y"]),
        (b'[{"label":"a"},{"label":"b"}]', JSON, 2, [b'{"label":"a"}', b'{"label":"b"}']),
        (b'[{"label":"a"}]', JSON, 1, [b'{"label":"a"}']),
        (b'{"label":"a"}\n', JSON, 1, [b'{"label":"a"}']),
        (b'[{"l":"a","s":1},{"l":"b","s":0}]', JSON, 1, [b'[{"l":"a","s":1},{"l":"b","s":0}]']),  # top-k
        (b'{"a":1}\n{"a":2}', JSON, 2, [b'{"a":1}', b'{"a":2}']),  # JSON Lines sent as JSON
        (b"not json", JSON, 1, [b"not json"]),
        (b"", CSV, 1, [b""]),
        (b"\x00\x01", "application/x-npy", 1, [b"\x00\x01"]),
        ("é\n✓\n".encode(), CSV, 2, ["é".encode(), "✓".encode()]),
    ],
)
def test_split_response(body: bytes, content_type: str, expected: int, results: list[bytes]) -> None:
    assert split_response(body, content_type, expected) == results


@pytest.mark.parametrize(
    ("body", "content_type", "expected", "match"),
    [
        (b"1\n2\n", CSV, 3, r"model returned 2 results for 3 records \(text/csv response\)"),
        (b"1\n2\n3\n4\n", JSONL, 3, "model returned 4 results for 3 records"),
        (b"1\n2\n", CSV, 1, "model returned 2 results for 1 record "),
        (b'{"predictions":[1,2,3]}', JSON, 3, "model returned 1 result for 3 records"),
        (b"[1,2]", JSON, 3, "model returned 2 results for 3 records"),
        (b"", CSV, 2, "model returned 0 results for 2 records"),
        (b"{oops", JSON, 2, "not valid JSON"),
        (b"\x00\x01", "application/x-npy", 2, "cannot split a application/x-npy response"),
    ],
)
def test_split_response_mismatch(body: bytes, content_type: str, expected: int, match: str) -> None:
    with pytest.raises(BadInput, match=match) as caught:
        split_response(body, content_type, expected)
    # Only a real count difference is a ResultCountMismatch; an unsplittable body is not countable.
    assert isinstance(caught.value, ResultCountMismatch) is match.startswith("model returned")


@pytest.mark.parametrize(
    ("record", "result", "content_type", "expected"),
    [
        (b"1,2,3", b"1", CSV, b"1,2,3,1"),
        (b"id,1,2", b"billing,0.9", CSV, b"id,1,2,billing,0.9"),
        (b'"a, b",2', b"x", CSV, b'"a, b",2,x'),
        (b'{"key":1}', b'{"label":1}', JSON, b'{"key":1,"SageMakerOutput":{"label":1}}'),
        (b'{"key":1}', b'{"label":1}', JSONL, b'{"key":1,"SageMakerOutput":{"label":1}}'),
        (b'{"SageMakerOutput":0,"k":1}', b"2", JSON, b'{"SageMakerOutput":2,"k":1}'),
        (b"[1,2]", b"0.5", JSON, b'{"SageMakerInput":[1,2],"SageMakerOutput":0.5}'),
        (b'"text"', b'"pos"', JSONL, b'{"SageMakerInput":"text","SageMakerOutput":"pos"}'),
    ],
)
def test_join(record: bytes, result: bytes, content_type: str, expected: bytes) -> None:
    assert join(record, result, content_type) == expected


# --- docs/transform.md worked examples, run through the pure pipeline -------------------------------------------------

CSV_INPUT = b"id1,1,2,3\nid2,4,5,6\nid3,7,8,9\n"


def csv_model(body: bytes) -> bytes:
    """Predicts the sum of the numeric fields of each CSV line; refuses non-numeric fields (like an ID column)."""
    out = []
    for line in body.decode().splitlines():
        out.append(str(sum(int(v) for v in line.split(","))))
    return ("\n".join(out) + "\n").encode()


def run(
    request_dp: dict[str, str],
    data: bytes,
    model: Callable[[bytes], bytes],
    *,
    content_type: str = CSV,
    accept: str = CSV,
    strategy: str = "MultiRecord",
    limit: int | None = None,
) -> bytes:
    request = validate_request(
        {
            "TransformJobName": "dp",
            "ModelName": "m",
            "BatchStrategy": strategy,
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/in/"}},
                "ContentType": content_type,
                "SplitType": "Line",
            },
            "TransformOutput": {"S3OutputPath": "s3://bucket/out/", "Accept": accept, "AssembleWith": "Line"},
            "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
            "DataProcessing": request_dp,
        }
    )
    params = resolve(request)
    processor = DataProcessor.from_params(params)
    assembler = Assembler(params.assemble_with, params.result_type)
    records = (processor.filter_record(r) for r in iter_records(io.BytesIO(data), params.split_type))
    out = b""
    for batch in pack(
        records, split_type=params.split_type, strategy=params.batch_strategy, max_payload_bytes=limit
    ):
        out += b"".join(assembler.feed(processor.handle(batch.records, model(batch.body))))
    return out


def test_example_default_output() -> None:
    dp = {"InputFilter": "$", "JoinSource": "None", "OutputFilter": "$"}
    assert run(dp, b"1,2,3\n4,5,6\n", csv_model) == b"6\n15\n"


def test_example_join_all_input_columns() -> None:
    assert run({"JoinSource": "Input"}, b"1,2,3\n4,5,6\n", csv_model) == b"1,2,3,6\n4,5,6,15\n"


@pytest.mark.parametrize("strategy", ["MultiRecord", "SingleRecord"])
@pytest.mark.parametrize("limit", [None, 12])
def test_example_drop_id_for_inference_keep_it_in_output(strategy: str, limit: int | None) -> None:
    dp = {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$"}
    assert run(dp, CSV_INPUT, csv_model, strategy=strategy, limit=limit) == (
        b"id1,1,2,3,6\nid2,4,5,6,15\nid3,7,8,9,24\n"
    )


def test_example_id_and_prediction_only() -> None:
    dp = {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"}
    assert run(dp, CSV_INPUT, csv_model) == b"id1,6\nid2,15\nid3,24\n"


def test_example_inclusive_slice_on_the_join() -> None:
    dp = {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[1:3]"}
    assert run(dp, CSV_INPUT, csv_model) == b"1,2,3\n4,5,6\n7,8,9\n"


def json_model(body: bytes) -> bytes:
    """A JSON Lines model: one {"label": sum} per line."""
    lines = body.decode().splitlines()
    return "".join(json.dumps({"label": sum(json.loads(line))}) + "\n" for line in lines).encode()


def json_array_model(body: bytes) -> bytes:
    """A JSON model answering a JSON array (one element per input line), like the HF toolkit does."""
    return json.dumps([{"label": sum(json.loads(line))} for line in body.decode().splitlines()]).encode()


@pytest.mark.parametrize(
    ("content_type", "accept", "model"),
    [(JSONL, JSONL, json_model), (JSON, JSON, json_array_model), (JSONL, JSON, json_array_model)],
)
def test_example_json_id_attribute(content_type: str, accept: str, model: Callable[[bytes], bytes]) -> None:
    data = b'{"id":1,"features":[1,2]}\n{"id":2,"features":[3,4]}\n'
    dp = {"InputFilter": "$.features", "JoinSource": "Input", "OutputFilter": "$['id','SageMakerOutput']"}
    out = run(dp, data, model, content_type=content_type, accept=accept)
    assert out == b'{"id":1,"SageMakerOutput":{"label":3}}\n{"id":2,"SageMakerOutput":{"label":7}}\n'


def test_json_lines_join_keeps_input_and_wraps_non_objects() -> None:
    data = b'{"text":"a"}\n[1,2]\n'

    def model(body: bytes) -> bytes:
        return b'{"label":"x"}\n{"label":"y"}\n'

    out = run({"JoinSource": "Input"}, data, model, content_type=JSONL, accept=JSONL)
    assert out == (
        b'{"text":"a","SageMakerOutput":{"label":"x"}}\n{"SageMakerInput":[1,2],"SageMakerOutput":{"label":"y"}}\n'
    )


def test_output_filter_without_join_applies_to_the_result() -> None:
    def model(body: bytes) -> bytes:
        return b"billing,0.9,x\nfraud,0.8,y\n"

    assert run({"OutputFilter": "$[0]"}, b"a\nb\n", model) == b"billing\nfraud\n"


# --- DataProcessor ---------------------------------------------------------------------------------------------


def rec(data: bytes, index: int = 0) -> Record:
    return Record(data, index, index + 1, 0)


THREE = [rec(b"a", 0), rec(b"b", 1), rec(b"c", 2)]


def test_lenient_count_mismatch_writes_the_body_and_warns() -> None:
    """As SageMaker: a response with another number of results is written as returned; the caller hears of it."""
    processor = DataProcessor(content_type=CSV, accept=CSV, split_type="Line")
    warnings: list[str] = []
    assert processor.counting and processor.count_required_by is None
    assert processor.handle(THREE, b"1\n2\n", warn=warnings.append) == [b"1\n2\n"]
    assert warnings == [
        "model returned 2 results for 3 records (text/csv response) in the mini-batch of lines 1-3"
    ]
    assert processor.handle(THREE, b"1\n2\n3", warn=warnings.append) == [b"1\n2\n3"]
    # Not countable (invalid JSON): written as returned, no warning.
    assert processor.handle(THREE, b"{oops", "application/json", warn=warnings.append) == [b"{oops"]
    assert len(warnings) == 1


def test_strict_count_mismatch_fails_naming_both_counts_and_the_lines() -> None:
    processor = DataProcessor(content_type=CSV, accept=CSV, split_type="Line", record_count="strict")
    with pytest.raises(
        BadInput,
        match=r"^model returned 2 results for 3 records \(text/csv response\) in the mini-batch of lines 1-3; "
        r"record_count=strict needs one result per record$",
    ):
        processor.handle(THREE, b"1\n2\n")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"join_source": "Input"}, "JoinSource=Input"),
        ({"output_filter": "$[0]"}, r"OutputFilter \$\[0\]"),
        ({"alignment": "on_record_error=error-row"}, "on_record_error=error-row"),
        ({"alignment": "consolidate", "record_count": "strict"}, "consolidate"),
    ],
)
def test_features_that_line_results_up_need_equal_counts_and_say_why(
    kwargs: dict[str, Any], reason: str
) -> None:
    processor = DataProcessor(**{"content_type": CSV, "split_type": "Line", **kwargs})
    with pytest.raises(
        BadInput,
        match=rf"^model returned 1 result for 3 records \(application/json response\) in the mini-batch of "
        rf"lines 1-3; {reason} needs one result per record$",
    ):
        processor.handle(THREE, b'{"predictions":[1,2,3]}', "application/json; charset=utf-8")


def test_a_response_is_split_by_its_own_content_type() -> None:
    """Accept unset on a CSV job: the container answers JSON, and the JSON array holds one result per record."""
    processor = DataProcessor(content_type=CSV, split_type="Line", record_count="strict")
    body = b'[{"label":"a"},{"label":"b"},{"label":"c"}]'
    assert processor.handle(THREE, body, "application/json") == [body]
    # Read as the request's text/csv, this body would be one line: 1 result for 3 records.
    with pytest.raises(BadInput, match="1 result for 3 records"):
        processor.handle(THREE, body)


def test_a_csv_join_reads_a_json_result_and_writes_csv() -> None:
    processor = DataProcessor(content_type=CSV, join_source="Input", split_type="Line")
    records = [rec(b"1,x", 0), rec(b"2,y", 1)]
    out = processor.handle(records, b'[[0.9,"pos"],{"label":"neg"}]', "application/json")
    assert out == [b"1,x,0.9,pos", b'2,y,"{""label"":""neg""}"']
    assert processor.result_columns(b'[0.9,"pos"]', "application/json") == 2
    # A text/plain result is one text field.
    assert processor.handle(records, b"a,b\nc\n", "text/plain") == [b'1,x,"a,b"', b"2,y,c"]


def test_an_output_filter_without_join_keeps_the_responses_format() -> None:
    processor = DataProcessor(content_type=CSV, output_filter="$.label", split_type="Line")
    out = processor.handle(THREE[:2], b'[{"label":"a"},{"label":"b"}]', "application/json")
    assert out == [b'"a"', b'"b"']
    assert processor.output_type("application/json") == "application/json"
    assert processor.output_type("text/plain") == CSV


@pytest.mark.parametrize(
    ("kwargs", "counting"),
    [
        ({"split_type": "Line"}, True),
        ({"split_type": "Line", "batch_strategy": "MULTI_RECORD"}, True),
        ({"split_type": "Line", "batch_strategy": "SingleRecord"}, False),
        ({"split_type": "None"}, False),
        ({"split_type": "RecordIO"}, False),
    ],
)
def test_when_counts_are_checked(kwargs: dict[str, Any], counting: bool) -> None:
    assert DataProcessor(**{"content_type": CSV, **kwargs}).counting is counting


def test_binary_responses_are_not_counted_even_when_strict() -> None:
    processor = DataProcessor(
        content_type=CSV, accept="application/x-npy", split_type="Line", record_count="strict"
    )
    warnings: list[str] = []
    assert processor.handle(THREE, b"\x93NUMPY", warn=warnings.append) == [b"\x93NUMPY"]
    assert warnings == []


def test_passthrough_processor_is_inactive() -> None:
    processor = DataProcessor(content_type="application/x-npy", split_type="None")
    record = rec(b"\x00")
    assert not processor.active
    assert processor.filter_record(record) is record
    assert processor.handle([record], b"anything") == [b"anything"]
    assert processor.process_one(record, b"result") == b"result"


def test_filter_record_keeps_the_original_and_names_bad_records() -> None:
    processor = DataProcessor(content_type=JSONL, accept=JSONL, input_filter="$.x", split_type="Line")
    filtered = processor.filter_record(rec(b'{"x":[1],"id":3}'))
    assert (filtered.data, filtered.original, filtered.unfiltered) == (
        b"[1]",
        b'{"x":[1],"id":3}',
        b'{"x":[1],"id":3}',
    )
    with pytest.raises(BadInput, match=r"InputFilter \$\.x: line 5 \(record 4, offset 0\): .*no key 'x'"):
        processor.filter_record(rec(b'{"y":1}', 4))
    with pytest.raises(BadInput, match="line 1 .*not valid JSON"):
        processor.filter_record(rec(b"{bad"))


def test_process_one_names_the_record() -> None:
    processor = DataProcessor(
        content_type=CSV, accept=CSV, join_source="Input", output_filter="$[5]", split_type="Line"
    )
    with pytest.raises(
        BadInput, match=r"line 2 \(record 1, offset 0\): JSONPath \$\[5\]: index 5 is outside"
    ):
        processor.handle([rec(b"a,b", 1)], b"1\n")


def test_error_row_mode_building_blocks() -> None:
    processor = DataProcessor(content_type=CSV, accept=CSV, join_source="Input", split_type="Line")
    records = [rec(b"a", 0), rec(b"b", 1)]
    results = processor.split(records, b"1\n2\n")
    assert [processor.process_one(r, x) for r, x in zip(records, results, strict=True)] == [b"a,1", b"b,2"]


@pytest.mark.parametrize(
    ("kwargs", "header", "expected"),
    [
        ({"join_source": "Input"}, b"id,f1,f2", b"id,f1,f2,SageMakerOutput"),
        ({"join_source": "Input", "columns": 2}, b"id,f1", b"id,f1,SageMakerOutput_1,SageMakerOutput_2"),
        (
            {"join_source": "Input", "output_filter": "$[0,-1]", "columns": 3},
            b"id,f1",
            b"id,SageMakerOutput_3",
        ),
        ({"join_source": "Input", "output_filter": "$[0,-1]"}, b"id,f1,f2", b"id,SageMakerOutput"),
        ({"join_source": "Input", "output_filter": "$[9]"}, b"id,f1,f2", None),
        ({}, b"id,f1,f2", None),
        ({"join_source": "Input", "content_type": JSON, "accept": JSON}, b'{"a":1}', None),
    ],
)
def test_output_header(kwargs: dict[str, Any], header: bytes, expected: bytes | None) -> None:
    columns = kwargs.pop("columns", 1)
    processor = DataProcessor(**{"content_type": CSV, "accept": CSV, "split_type": "Line", **kwargs})
    assert processor.output_header(header, columns) == expected


def test_filter_header() -> None:
    processor = DataProcessor(content_type=CSV, input_filter="$[1:]", split_type="Line")
    assert processor.filter_header(b"id,f1,f2") == b"f1,f2"
