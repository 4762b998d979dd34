"""The CreateTransformJob request model: boto3-shaped input, every create-time rule, AWS-style messages, defaults."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from batchlane.errors import ValidationError
from batchlane.transform.options import JobOptions, validate_options
from batchlane.transform.params import container_environment, parse_execution_parameters, resolve
from batchlane.transform.spec import CreateTransformJobRequest, canonical_uri, validate_request

DELETE = object()


def base() -> dict[str, Any]:
    """The minimal request boto3 accepts."""
    return {
        "TransformJobName": "job-1",
        "ModelName": "model-1",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/in/"}}
        },
        "TransformOutput": {"S3OutputPath": "s3://bucket/out/"},
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
    }


FULL: dict[str, Any] = {
    "TransformJobName": "full-job-2024-01-01-00-00-00-000",
    "ModelName": "my-model",
    "MaxConcurrentTransforms": 4,
    "ModelClientConfig": {"InvocationsTimeoutInSeconds": 3600, "InvocationsMaxRetries": 0},
    "MaxPayloadInMB": 25,
    "BatchStrategy": "SingleRecord",
    "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "_X1": "any value: ü\n"},
    "TransformInput": {
        "DataSource": {
            "S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": "s3://bucket/manifests/in.manifest"}
        },
        "ContentType": "text/csv",
        "CompressionType": "Gzip",
        "SplitType": "Line",
    },
    "TransformOutput": {
        "S3OutputPath": "s3://bucket/out",
        "Accept": "text/csv",
        "AssembleWith": "Line",
        "KmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/abcd-1234",
    },
    "DataCaptureConfig": {
        "DestinationS3Uri": "s3://bucket/capture/",
        "KmsKeyId": "alias/my-key",
        "GenerateInferenceId": True,
    },
    "TransformResources": {
        "InstanceType": "ml.g4dn.xlarge",
        "InstanceCount": 2,
        "VolumeKmsKeyId": "key-id",
        "TransformAmiVersion": "al2-ami-sagemaker-batch-gpu-470",
    },
    "DataProcessing": {"InputFilter": "$[1:]", "OutputFilter": "$[0,-1]", "JoinSource": "Input"},
    "Tags": [{"Key": "team", "Value": "ml"}, {"Key": "ключ", "Value": "значение 1.0 +=@:/_-"}],
    "ExperimentConfig": {
        "ExperimentName": "exp",
        "TrialName": "trial-1",
        "TrialComponentDisplayName": "tc",
        "RunName": "run--1",
    },
}


def mutate(changes: dict[str, Any]) -> dict[str, Any]:
    data = base()
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return data


def test_minimal_request() -> None:
    request = validate_request(base())
    assert isinstance(request, CreateTransformJobRequest)
    assert request.TransformInput.DataSource.S3DataSource.S3Uri == "s3://bucket/in/"
    assert request.to_dict() == base()


def test_full_request_round_trip() -> None:
    request = validate_request(copy.deepcopy(FULL))
    assert request.to_dict() == FULL
    assert validate_request(request.to_dict()) == request
    assert validate_request(request) is request


def test_sdk_style_request_with_explicit_nones_left_out() -> None:
    # What sagemaker.Session.transform builds (tests/unit/test_session.py::test_transform_pack_to_request).
    data = mutate(
        {
            "TransformInput.ContentType": "application/jsonlines",
            "TransformInput.SplitType": "Line",
            "TransformInput.CompressionType": "None",
            "TransformOutput.Accept": "application/jsonlines",
            "TransformOutput.AssembleWith": "Line",
            "DataProcessing": {"InputFilter": "$.features", "OutputFilter": "$", "JoinSource": "Input"},
            "ModelClientConfig": {"InvocationsTimeoutInSeconds": 60, "InvocationsMaxRetries": 1},
            "Environment": {},
            "Tags": [],
        }
    )
    assert validate_request(data).to_dict() == data


@pytest.mark.parametrize(
    "changes",
    [
        {"TransformJobName": "a"},
        {"TransformJobName": "a--b"},
        {"TransformJobName": "A1-" + "b" * 60},
        {"ModelName": "m-1"},
        {"MaxPayloadInMB": 0},
        {"MaxPayloadInMB": 100},
        {"MaxConcurrentTransforms": 0, "MaxPayloadInMB": 100},
        {"MaxConcurrentTransforms": 100, "MaxPayloadInMB": 1},
        {"MaxConcurrentTransforms": 1000},
        {"BatchStrategy": "MultiRecord", "TransformInput.SplitType": "None"},  # accepted, does nothing
        {"Environment": {f"K{i}": "v" for i in range(16)}},
        {"Environment": {"K": "v" * 10240}},
        {"TransformInput.DataSource.S3DataSource.S3Uri": "s3://bucket"},
        {"TransformInput.DataSource.S3DataSource.S3Uri": "https://bucket.s3.us-east-1.amazonaws.com/in/"},
        {"TransformInput.DataSource.S3DataSource.S3Uri": "https://bucket.s3.amazonaws.com/in/"},
        {"TransformInput.DataSource.S3DataSource.S3Uri": "https://s3.eu-west-1.amazonaws.com/bucket/in"},
        {"TransformInput.DataSource.S3DataSource.S3Uri": "file:///data/in/"},
        {"TransformInput.DataSource.S3DataSource.S3Uri": "file://localhost/data/in"},
        {"TransformInput.DataSource.S3DataSource.S3Uri": "/data/in/part"},
        {"TransformInput.DataSource.S3DataSource.S3Uri": "s3://bucket/a..b/c"},
        {"TransformOutput.S3OutputPath": "/tmp/out"},
        {"TransformResources.InstanceType": "local"},
        {"TransformResources.InstanceType": "local_gpu"},
        {"TransformResources.InstanceType": "ml.p4d.24xlarge"},
        {"TransformResources.InstanceType": "ml.inf2.xlarge"},
        {"TransformOutput.KmsKeyId": ""},
        {"Tags": [{"Key": "k", "Value": ""}] + [{"Key": f"k{i}", "Value": "v"} for i in range(49)]},
        {"Tags": [{"Key": "Aws-like", "Value": "ok"}]},
        {"DataProcessing": {}},
        {"DataProcessing": {"InputFilter": "", "OutputFilter": "$", "JoinSource": "None"}},
        {
            "DataProcessing": {"InputFilter": "$[0:2,4:]"},
            "TransformInput.ContentType": "text/csv",
            "TransformInput.SplitType": "Line",
        },
        {"DataProcessing": {"InputFilter": "$.features"}, "TransformInput.ContentType": "application/json"},
        {
            "DataProcessing": {"OutputFilter": "$[0]"},
            "TransformOutput.Accept": "text/csv; charset=utf-8",
            "TransformInput.SplitType": "Line",
        },
        {
            "DataProcessing": {"JoinSource": "Input"},
            "TransformInput.ContentType": "application/jsonlines",
            "TransformOutput.Accept": "application/json",
            "TransformInput.SplitType": "Line",
        },
        {
            "DataProcessing": {"JoinSource": "Input"},
            "TransformInput.ContentType": "application/json",
            "TransformOutput.Accept": "application/json",
        },
        {
            "DataProcessing": {"JoinSource": "Input"},
            "TransformInput.ContentType": "text/csv",
            "TransformOutput.Accept": "text/csv",
            "TransformInput.SplitType": "Line",
        },
        {"ExperimentConfig": {}},
        {"DataCaptureConfig": {"DestinationS3Uri": "s3://bucket/capture"}},
    ],
)
def test_valid_variants(changes: dict[str, Any]) -> None:
    validate_request(mutate(changes))


URI = "TransformInput.DataSource.S3DataSource.S3Uri"


@pytest.mark.parametrize(
    ("changes", "field", "constraint"),
    [
        ({"TransformJobName": "a_b"}, "TransformJobName", "regular expression pattern"),
        ({"TransformJobName": "-ab"}, "TransformJobName", "regular expression pattern"),
        ({"TransformJobName": "ab-"}, "TransformJobName", "regular expression pattern"),
        ({"TransformJobName": "a.b"}, "TransformJobName", "regular expression pattern"),
        ({"TransformJobName": "../../etc"}, "TransformJobName", "regular expression pattern"),
        ({"TransformJobName": ""}, "TransformJobName", "length greater than or equal to 1"),
        ({"TransformJobName": "a" * 64}, "TransformJobName", "length less than or equal to 63"),
        ({"TransformJobName": 5}, "TransformJobName", "Member must be a string"),
        ({"TransformJobName": DELETE}, "TransformJobName", "Member must not be null"),
        ({"ModelName": ""}, "ModelName", "length greater than or equal to 1"),
        ({"ModelName": "m_1"}, "ModelName", "regular expression pattern"),
        ({"TransformInput": DELETE}, "TransformInput", "must not be null"),
        ({"TransformOutput.S3OutputPath": DELETE}, "TransformOutput.S3OutputPath", "must not be null"),
        (
            {"TransformResources.InstanceCount": DELETE},
            "TransformResources.InstanceCount",
            "must not be null",
        ),
        ({"Unknown": 1}, "Unknown", "Unknown field; must be one of: TransformJobName, ModelName"),
        (
            {"TransformInput.Foo": 1},
            "TransformInput.Foo",
            "must be one of: DataSource, ContentType, CompressionType",
        ),
        (
            {"TransformInput.DataSource.S3DataSource.Extra": "x"},
            "TransformInput.DataSource.S3DataSource.Extra",
            "must be one of: S3DataType, S3Uri",
        ),
        ({"Tags": [{"Key": "k", "Value": "v", "Other": 1}]}, "Tags[0].Other", "must be one of: Key, Value"),
        ({"MaxPayloadInMB": 101}, "MaxPayloadInMB", "value less than or equal to 100"),
        ({"MaxPayloadInMB": -1}, "MaxPayloadInMB", "value greater than or equal to 0"),
        ({"MaxPayloadInMB": "6"}, "MaxPayloadInMB", "Member must be an integer"),
        ({"MaxPayloadInMB": True}, "MaxPayloadInMB", "Member must be an integer"),
        ({"MaxPayloadInMB": 6.0}, "MaxPayloadInMB", "Member must be an integer"),
        ({"MaxConcurrentTransforms": -1}, "MaxConcurrentTransforms", "greater than or equal to 0"),
        ({"MaxConcurrentTransforms": 3, "MaxPayloadInMB": 50}, "MaxPayloadInMB", "(got 3 x 50 = 150)"),
        ({"MaxConcurrentTransforms": 101, "MaxPayloadInMB": 1}, "MaxPayloadInMB", "<= 100"),
        (
            {"ModelClientConfig": {"InvocationsTimeoutInSeconds": 0}},
            "ModelClientConfig.InvocationsTimeoutInSeconds",
            "greater than or equal to 1",
        ),
        (
            {"ModelClientConfig": {"InvocationsTimeoutInSeconds": 3601}},
            "ModelClientConfig.InvocationsTimeoutInSeconds",
            "less than or equal to 3600",
        ),
        (
            {"ModelClientConfig": {"InvocationsMaxRetries": 4}},
            "ModelClientConfig.InvocationsMaxRetries",
            "less than or equal to 3",
        ),
        (
            {"ModelClientConfig": {"InvocationsMaxRetries": -1}},
            "ModelClientConfig.InvocationsMaxRetries",
            "greater than or equal to 0",
        ),
        ({"BatchStrategy": "MULTI_RECORD"}, "BatchStrategy", "enum value set: [MultiRecord, SingleRecord]"),
        (
            {"Environment": {f"K{i}": "v" for i in range(17)}},
            "Environment",
            "length less than or equal to 16",
        ),
        ({"Environment": {"1BAD": "v"}}, "Environment.1BAD", "key must satisfy regular expression pattern"),
        ({"Environment": {"BAD-KEY": "v"}}, "Environment.BAD-KEY", "regular expression pattern"),
        ({"Environment": {"K": "v" * 10241}}, "Environment.K", "length less than or equal to 10240"),
        ({"Environment": {"K": 1}}, "Environment.K", "Member must be a string"),
        ({"Environment": ["K=v"]}, "Environment", "Member must be an object"),
        (
            {"TransformInput.DataSource.S3DataSource.S3DataType": "AugmentedManifestFile"},
            "TransformInput.DataSource.S3DataSource.S3DataType",
            "not supported by transform jobs",
        ),
        (
            {"TransformInput.DataSource.S3DataSource.S3DataType": "Converse"},
            "TransformInput.DataSource.S3DataSource.S3DataType",
            "not supported by transform jobs",
        ),
        (
            {"TransformInput.DataSource.S3DataSource.S3DataType": "Prefix"},
            "TransformInput.DataSource.S3DataSource.S3DataType",
            "enum value set: [ManifestFile, S3Prefix",
        ),
        ({URI: "http://169.254.169.254/latest"}, URI, "unsupported scheme 'http'"),
        ({URI: "https://example.com/data"}, URI, "https URLs must be S3 object URLs"),
        ({URI: "https://bucket.s3.amazonaws.com.evil.com/x"}, URI, "https URLs must be S3 object URLs"),
        ({URI: "ftp://host/x"}, URI, "unsupported scheme 'ftp'"),
        ({URI: ""}, URI, "must not be empty"),
        # A request may be carried out in another folder (control plane, worker): relative paths are refused.
        ({URI: "data/in"}, URI, "is a relative path"),
        ({URI: "./data/in/"}, URI, "is a relative path"),
        ({URI: "s3://bucket/in/../../secret"}, URI, "'..' path segments"),
        ({URI: "s3://bucket/in/%2e%2e/x"}, URI, "'..' path segments"),
        ({URI: "/data/in/../../etc"}, URI, "'..' path segments"),
        ({URI: "..\\windows"}, URI, "'..' path segments"),
        ({URI: "file:///data/%2E%2E/etc"}, URI, "'..' path segments"),
        ({URI: "s3://b/x"}, URI, "not a valid S3 bucket name"),
        ({URI: "s3://A_B/"}, URI, "'A_B' is not a valid S3 bucket name: it may hold only lowercase"),
        ({URI: "s3://Legacy_Bucket/x"}, URI, "not a valid S3 bucket name"),
        ({URI: "s3://my..bucket/x"}, URI, "two adjacent dots"),
        ({URI: "s3://192.168.5.4/x"}, URI, "IP address"),
        ({URI: "s3://xn--bucket/x"}, URI, "must not start with xn--"),
        ({URI: "s3://bucket-s3alias/x"}, URI, "must not end with -s3alias"),
        ({URI: "s3://-bucket/x"}, URI, "start and end with a letter or digit"),
        ({URI: "s3://" + "b" * 64 + "/x"}, URI, "3-63 characters"),
        ({URI: "s3:///x"}, URI, "not a valid S3 bucket name"),
        ({URI: "file://host/data"}, URI, "must not name a host"),
        ({URI: "/data/in\x00"}, URI, "NUL"),
        ({URI: "s3://bucket/" + "k" * 1020}, URI, "at most 1024 characters"),
        ({"TransformOutput.S3OutputPath": "/out/../x"}, "TransformOutput.S3OutputPath", "'..' path segments"),
        ({"TransformInput.CompressionType": "gzip"}, "TransformInput.CompressionType", "[None, Gzip]"),
        (
            {"TransformInput.SplitType": "line"},
            "TransformInput.SplitType",
            "[None, Line, RecordIO, TFRecord]",
        ),
        (
            {"TransformInput.ContentType": "x" * 257},
            "TransformInput.ContentType",
            "less than or equal to 256",
        ),
        ({"TransformOutput.AssembleWith": "Lines"}, "TransformOutput.AssembleWith", "[None, Line]"),
        ({"TransformOutput.KmsKeyId": "key id!"}, "TransformOutput.KmsKeyId", "regular expression pattern"),
        ({"TransformResources.InstanceType": "m5.xlarge"}, "TransformResources.InstanceType", "pattern"),
        ({"TransformResources.InstanceType": "gpu"}, "TransformResources.InstanceType", "pattern"),
        (
            {"TransformResources.InstanceCount": 0},
            "TransformResources.InstanceCount",
            "greater than or equal to 1",
        ),
        (
            {"TransformResources.TransformAmiVersion": "-x"},
            "TransformResources.TransformAmiVersion",
            "pattern",
        ),
        ({"DataCaptureConfig": {}}, "DataCaptureConfig.DestinationS3Uri", "must not be null"),
        (
            {"DataCaptureConfig": {"DestinationS3Uri": "http://x/y"}},
            "DataCaptureConfig.DestinationS3Uri",
            "scheme",
        ),
        (
            {"DataCaptureConfig": {"DestinationS3Uri": "s3://bucket/c", "GenerateInferenceId": "yes"}},
            "DataCaptureConfig.GenerateInferenceId",
            "Member must be a boolean",
        ),
        (
            {"DataProcessing": {"InputFilter": "$[1:"}},
            "DataProcessing.InputFilter",
            "at position 4: expected ']'",
        ),
        ({"DataProcessing": {"OutputFilter": "$..a"}}, "DataProcessing.OutputFilter", "recursive descent"),
        ({"DataProcessing": {"InputFilter": "$." + "a" * 62}}, "DataProcessing.InputFilter", "at most 63"),
        ({"DataProcessing": {"JoinSource": "Output"}}, "DataProcessing.JoinSource", "[Input, None]"),
        ({"Tags": [{"Key": "k", "Value": "v"}] * 51}, "Tags", "length less than or equal to 50"),
        ({"Tags": [{"Key": "", "Value": "v"}]}, "Tags[0].Key", "length between 1 and 128"),
        ({"Tags": [{"Key": "k" * 129, "Value": "v"}]}, "Tags[0].Key", "length between 1 and 128"),
        ({"Tags": [{"Key": "k", "Value": "v" * 257}]}, "Tags[0].Value", "length between 0 and 256"),
        ({"Tags": [{"Key": "k#", "Value": "v"}]}, "Tags[0].Key", r"\p{L}"),
        ({"Tags": [{"Key": "k", "Value": "v;"}]}, "Tags[0].Value", r"\p{L}"),
        ({"Tags": [{"Key": "k"}]}, "Tags[0].Value", "must not be null"),
        ({"Tags": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]}, "Tags[1].Key", "unique"),
        ({"Tags": [{"Key": "aws:created", "Value": "1"}]}, "Tags[0].Key", "reserved"),
        ({"ExperimentConfig": {"ExperimentName": "a_b"}}, "ExperimentConfig.ExperimentName", "pattern"),
        (
            {"ExperimentConfig": {"RunName": "r" * 121}},
            "ExperimentConfig.RunName",
            "less than or equal to 120",
        ),
        ({"ExperimentConfig": {"TrialName": ""}}, "ExperimentConfig.TrialName", "greater than or equal to 1"),
    ],
)
def test_invalid_requests_name_the_field(changes: dict[str, Any], field: str, constraint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_request(mutate(changes))
    error = caught.value
    assert error.field == field
    assert error.status == 400 and error.code == "ValidationException"
    assert f"at '{field}' failed to satisfy constraint: " in str(error)
    assert constraint in str(error)


JOIN_CSV = {
    "DataProcessing": {"JoinSource": "Input"},
    "TransformInput.ContentType": "text/csv",
    "TransformOutput.Accept": "text/csv",
    "TransformInput.SplitType": "Line",
}


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        (
            {**JOIN_CSV, "TransformInput.ContentType": "application/x-npy"},
            "TransformInput.ContentType",
            "JoinSource=Input needs ContentType text/csv, application/json, application/jsonlines",
        ),
        (
            {**JOIN_CSV, "TransformInput.ContentType": DELETE},
            "TransformInput.ContentType",
            "needs ContentType",
        ),
        (
            {**JOIN_CSV, "TransformOutput.Accept": DELETE},
            "TransformOutput.Accept",
            "JoinSource=Input needs Accept",
        ),
        ({**JOIN_CSV, "TransformOutput.Accept": "application/json"}, "TransformOutput.Accept", "same family"),
        (
            {**JOIN_CSV, "TransformInput.SplitType": DELETE},
            "TransformInput.SplitType",
            "text/csv needs SplitType=Line",
        ),
        (
            {**JOIN_CSV, "TransformInput.SplitType": "RecordIO"},
            "TransformInput.SplitType",
            "needs SplitType=Line",
        ),
        (
            {**JOIN_CSV, "TransformOutput.AssembleWith": "None"},
            "TransformOutput.AssembleWith",
            "needs AssembleWith=Line",
        ),
        (
            {
                "DataProcessing": {"JoinSource": "Input"},
                "TransformInput.ContentType": "application/jsonlines",
                "TransformOutput.Accept": "application/jsonlines",
            },
            "TransformInput.SplitType",
            "needs SplitType=Line",
        ),
        (
            {
                "DataProcessing": {"InputFilter": "$[1:]"},
                "TransformInput.ContentType": "image/png",
                "TransformInput.SplitType": "Line",
            },
            "TransformInput.ContentType",
            "InputFilter needs ContentType",
        ),
        (
            {"DataProcessing": {"OutputFilter": "$[0]"}, "TransformInput.SplitType": "Line"},
            "TransformOutput.Accept",
            "OutputFilter needs Accept",
        ),
        (
            {**JOIN_CSV, "DataProcessing": {"InputFilter": "$.features", "JoinSource": "Input"}},
            "DataProcessing.InputFilter",
            "text/csv records are arrays of fields",
        ),
        (
            {
                **JOIN_CSV,
                "DataProcessing": {"OutputFilter": "$['id','SageMakerOutput']", "JoinSource": "Input"},
            },
            "DataProcessing.OutputFilter",
            "use index paths",
        ),
    ],
)
def test_data_processing_rules(changes: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_request(mutate(changes))
    assert caught.value.field == field
    assert reason in str(caught.value)


def test_message_mirrors_aws() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_request(mutate({"TransformInput.SplitType": "Lines"}))
    assert str(caught.value) == (
        "1 validation error detected: Value 'Lines' at 'TransformInput.SplitType' failed to satisfy constraint: "
        "Member must satisfy enum value set: [None, Line, RecordIO, TFRecord]"
    )


def test_every_problem_is_reported() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_request(
            mutate({"TransformJobName": "a_b", "MaxPayloadInMB": 101, "TransformOutput.Extra": 1})
        )
    message = str(caught.value)
    assert message.startswith("3 validation errors detected: ")
    assert message.count("; Value ") == 2
    assert caught.value.field == "TransformJobName"
    assert "Value null at 'TransformJobName'" not in message


@pytest.mark.parametrize("data", [None, "request", 5, ["TransformJobName"]])
def test_not_an_object(data: Any) -> None:
    with pytest.raises(
        ValidationError, match="at 'request' failed to satisfy constraint: Member must be an object"
    ):
        validate_request(data)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/k", "s3://bucket/k"),
        ("https://bucket.s3.us-east-1.amazonaws.com/in/a%20b.csv", "s3://bucket/in/a b.csv"),
        ("https://s3.amazonaws.com/bucket/in/", "s3://bucket/in/"),
        ("https://my.bucket.s3-us-west-2.amazonaws.com/x", "s3://my.bucket/x"),
        ("https://bucket.s3.cn-north-1.amazonaws.com.cn", "s3://bucket/"),
        ("/data/in", "/data/in"),
        ("file:///data/in", "file:///data/in"),
    ],
)
def test_canonical_uri(uri: str, expected: str) -> None:
    assert canonical_uri(uri) == expected


# --- effective values ------------------------------------------------------------------------------------------


def test_defaults() -> None:
    params = resolve(validate_request(base()))
    assert (params.max_concurrent_transforms, params.max_payload_mb, params.batch_strategy) == (
        1,
        6,
        "MultiRecord",
    )
    assert (params.invocations_timeout_s, params.invocations_max_retries) == (600, 3)
    assert (params.split_type, params.compression_type, params.assemble_with) == ("None", "None", "None")
    assert (params.input_filter, params.output_filter, params.join_source) == ("$", "$", "None")
    assert (params.content_type, params.accept) == (None, None)
    assert params.max_payload_bytes == 6 * 1024 * 1024
    assert dict(params.sources) == {
        "MaxConcurrentTransforms": "default",
        "MaxPayloadInMB": "default",
        "BatchStrategy": "default",
    }
    assert params.log_line() == "MaxConcurrentTransforms=1, MaxPayloadInMB=6, BatchStrategy=MULTI_RECORD"


@pytest.mark.parametrize(
    ("changes", "container", "expected", "sources"),
    [
        (
            {},
            {"MaxConcurrentTransforms": 8, "MaxPayloadInMB": 2, "BatchStrategy": "SINGLE_RECORD"},
            (8, 2, "SingleRecord"),
            ("container", "container", "container"),
        ),
        (
            {},
            {"MaxConcurrentTransforms": "4", "MaxPayloadInMB": "0", "BatchStrategy": "MultiRecord"},
            (4, 0, "MultiRecord"),
            ("container", "container", "container"),
        ),
        ({}, {"BatchStrategy": "multi_record"}, (1, 6, "MultiRecord"), ("default", "default", "container")),
        (
            {"MaxConcurrentTransforms": 2, "MaxPayloadInMB": 10, "BatchStrategy": "MultiRecord"},
            {"MaxConcurrentTransforms": 8, "MaxPayloadInMB": 2, "BatchStrategy": "SINGLE_RECORD"},
            (2, 10, "MultiRecord"),
            ("request", "request", "request"),
        ),
        (
            {"MaxConcurrentTransforms": 0, "MaxPayloadInMB": 0},
            {"MaxConcurrentTransforms": 3},
            (3, 0, "MultiRecord"),
            ("container", "request", "default"),
        ),
        ({"MaxConcurrentTransforms": 0}, None, (1, 6, "MultiRecord"), ("default", "default", "default")),
        (
            {},
            {"MaxConcurrentTransforms": 0, "Unknown": 1},
            (1, 6, "MultiRecord"),
            ("default", "default", "default"),
        ),
        ({}, {}, (1, 6, "MultiRecord"), ("default", "default", "default")),
    ],
)
def test_resolution_order(
    changes: dict[str, Any],
    container: dict[str, Any] | None,
    expected: tuple[int, int, str],
    sources: tuple[str, ...],
) -> None:
    params = resolve(validate_request(mutate(changes)), container)
    assert (params.max_concurrent_transforms, params.max_payload_mb, params.batch_strategy) == expected
    assert tuple(params.sources.values()) == sources


def test_unlimited_payload() -> None:
    params = resolve(validate_request(mutate({"MaxPayloadInMB": 0})))
    assert params.max_payload_bytes is None


@pytest.mark.parametrize(
    ("container", "match"),
    [
        ({"MaxPayloadInMB": 101}, r"MaxPayloadInMB must be an integer 0\.\.100, got 101"),
        ({"MaxPayloadInMB": "six"}, "MaxPayloadInMB must be an integer"),
        ({"MaxConcurrentTransforms": -1}, "MaxConcurrentTransforms must be an integer >= 0"),
        ({"MaxConcurrentTransforms": True}, "MaxConcurrentTransforms"),
        ({"BatchStrategy": "BATCH"}, "BatchStrategy must be MultiRecord or SingleRecord, got 'BATCH'"),
    ],
)
def test_bad_execution_parameters(container: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=f"/execution-parameters {match}"):
        parse_execution_parameters(container)


def test_client_config_and_other_values() -> None:
    params = resolve(validate_request(copy.deepcopy(FULL)))
    assert (params.invocations_timeout_s, params.invocations_max_retries) == (3600, 0)
    assert (params.split_type, params.compression_type, params.assemble_with) == ("Line", "Gzip", "Line")
    assert (params.input_filter, params.output_filter, params.join_source) == ("$[1:]", "$[0,-1]", "Input")
    assert params.result_type == "text/csv"


@pytest.mark.parametrize(
    ("changes", "assemble_with"),
    [
        (
            {"TransformInput.SplitType": "Line"},
            "Line",
        ),  # docs/transform.md: default Line for line-split input
        ({"TransformInput.SplitType": "Line", "TransformOutput.AssembleWith": "None"}, "None"),
        ({"TransformInput.SplitType": "RecordIO"}, "None"),
        ({}, "None"),
    ],
)
def test_assemble_with_default(changes: dict[str, Any], assemble_with: str) -> None:
    assert resolve(validate_request(mutate(changes))).assemble_with == assemble_with


def test_result_type_falls_back_to_content_type() -> None:
    params = resolve(
        validate_request(mutate({"TransformInput.ContentType": "Application/JSONL; charset=utf-8"}))
    )
    assert params.result_type == "application/jsonlines"


def test_container_environment() -> None:
    request = validate_request(copy.deepcopy(FULL))
    env = container_environment(request, {"SAGEMAKER_PROGRAM": "model.py", "MODEL_ONLY": "1"})
    assert env == {
        "SAGEMAKER_PROGRAM": "inference.py",  # the job's Environment wins over the model's
        "MODEL_ONLY": "1",
        "_X1": "any value: ü\n",
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "25",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4",
    }
    assert container_environment(validate_request(base())) == {"SAGEMAKER_BATCH": "true"}


# --- JobOptions ------------------------------------------------------------------------------------------------


def test_job_options_defaults() -> None:
    options = validate_options()
    assert options == JobOptions()
    assert (options.csv_header, options.on_record_error, options.consolidate) == ("none", "fail", None)
    assert (options.startup_timeout_s, options.max_error_ratio, options.output_layout) == (
        120.0,
        None,
        "mirror",
    )


def test_job_options_values() -> None:
    request = validate_request(
        mutate({"TransformInput.ContentType": "text/csv", "TransformInput.SplitType": "Line"})
    )
    options = validate_options(
        {
            "csv_header": "repeat",
            "on_record_error": "error-row",
            "consolidate": "/tmp/all.jsonl",
            "startup_timeout_s": 5,
            "max_error_ratio": 0.1,
        },
        request,
    )
    assert options.startup_timeout_s == 5.0
    assert validate_options(options, request) is options


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        ({"csv_header": "yes"}, "csv_header", "enum value set: [none, skip, repeat]"),
        ({"on_record_error": "ignore"}, "on_record_error", "[fail, error-row, skip]"),
        ({"startup_timeout_s": 0}, "startup_timeout_s", "value greater than 0"),
        ({"startup_timeout_s": True}, "startup_timeout_s", "Member must be a number"),
        ({"max_error_ratio": 2, "on_record_error": "skip"}, "max_error_ratio", "less than or equal to 1"),
        ({"consolidate": "http://x/y"}, "consolidate", "unsupported scheme"),
        ({"output_layout": "flat"}, "output_layout", "[mirror]"),
        ({"retries": 3}, "retries", "Unknown field; must be one of: csv_header, on_record_error"),
        ({"max_error_ratio": 0.5}, "max_error_ratio", "needs on_record_error error-row or skip"),
        ({"csv_header": "skip"}, "csv_header", "needs ContentType text/csv and SplitType=Line"),
    ],
)
def test_job_options_errors(data: dict[str, Any], field: str, text: str) -> None:
    request = validate_request(mutate({"TransformInput.ContentType": "application/json"}))
    with pytest.raises(ValidationError) as caught:
        validate_options(data, request)
    assert caught.value.field == field
    assert f"at '{field}' failed to satisfy constraint" in str(caught.value)
    assert text in str(caught.value)
