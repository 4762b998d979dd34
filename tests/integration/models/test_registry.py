"""The model registry over a real SQLite file: specs, idempotent create, SageMaker shapes, CreateModel mapping."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import pytest

from batchlane.errors import AlreadyExists, Conflict, NotFound, ValidationError
from batchlane.jobs import JobStore
from batchlane.models import ModelRegistry, ModelSpec, effective_environment, from_sagemaker


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


@pytest.fixture()
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(JobStore(tmp_path / "state.db"))


def test_spec_sources(model_dir: Path, tmp_path: Path) -> None:
    local = ModelSpec.parse({"name": "m", "model_data": str(model_dir) + "/"})
    assert local.model_data == str(model_dir) and local.is_local_data
    assert ModelSpec.parse({"name": "m", "model_data": model_dir.as_uri()}) == local, (
        "file:// and paths are one spec"
    )
    assert local.model_data_url == model_dir.as_uri()
    s3 = ModelSpec.parse({"name": "m", "model_data": "s3://bucket/models/model.tar.gz"})
    assert not s3.is_local_data and s3.model_data_url == "s3://bucket/models/model.tar.gz"
    cmd = ModelSpec.parse({"name": "m", "serve_command": ["my-server", "--port", "{port}"]})
    assert cmd.serve_command == ["my-server", "--port", "{port}"]
    url = ModelSpec.parse({"name": "m", "serve_url": "http://127.0.0.1:9000/"})
    assert url.serve_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "m"}, "exactly one of model_data .* got none"),
        ({"name": "m", "model_data": "/x", "serve_url": "http://h:1"}, "got model_data, serve_url"),
        ({"name": "-bad", "model_data": "/x"}, "'name'.*ModelName must be"),
        ({"name": "m" * 64, "model_data": "/x"}, "ModelName must be"),
        ({"name": "m", "model_data": "https://example.com/m.tar.gz"}, "'model_data'.*unsupported scheme"),
        ({"name": "m", "model_data": "s3://bucket"}, "must name an object or a prefix"),
        ({"name": "m", "serve_url": "ftp://h/x"}, "serve_url must be an http"),
        ({"name": "m", "serve_command": []}, "non-empty argument list"),
        ({"name": "m", "serve_command": ["a\x00b"]}, "NUL"),
        ({"name": "m", "model_data": "/x", "environment": {"1BAD": "v"}}, "key '1BAD' must match"),
        ({"name": "m", "model_data": "/x", "environment": {f"K{i}": "v" for i in range(17)}}, "at most 16"),
        ({"name": "m", "model_data": "/x", "environment": {"K": "v" * 10241}}, "longer than 10240"),
        ({"name": "m", "model_data": "/x", "environment": {"K": 1}}, "'environment.K'"),
        ({"name": "m", "model_data": "/x", "role": "admin"}, "'role'.*Extra inputs"),
    ],
)
def test_spec_validation_names_the_field(data: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelSpec.parse(data)


def test_create_describe_list_delete(registry: ModelRegistry, model_dir: Path) -> None:
    spec = ModelSpec.parse(
        {
            "name": "clf",
            "model_data": str(model_dir),
            "environment": {"BATCHLANE_TOP_K": "2"},
            "image": "batchlane:cpu",
        }
    )
    created = registry.create(spec)
    assert created.arn == "arn:aws:sagemaker:us-east-1:000000000000:model/clf"
    described = registry.describe("CLF")
    assert described == {
        "ModelName": "clf",
        "PrimaryContainer": {
            "Image": "batchlane:cpu",
            "ModelDataUrl": model_dir.as_uri(),
            "Environment": {"BATCHLANE_TOP_K": "2"},
        },
        "CreationTime": created.creation_time,
        "ModelArn": created.arn,
    }
    assert isinstance(described["CreationTime"], datetime)
    registry.create(ModelSpec.parse({"name": "ext", "serve_url": "http://127.0.0.1:9000"}))
    assert registry.describe("ext")["Batchlane"] == {"ServeUrl": "http://127.0.0.1:9000"}
    assert registry.describe("ext")["PrimaryContainer"] == {"Environment": {}}

    page, token = registry.list(sort_by="Name", sort_order="Ascending", max_results=1)
    assert [m.name for m in page] == ["clf"] and token
    page, token = registry.list(sort_by="Name", sort_order="Ascending", max_results=1, next_token=token)
    assert [m.name for m in page] == ["ext"] and token is None
    assert page[0].summary() == {
        "ModelName": "ext",
        "ModelArn": page[0].arn,
        "CreationTime": page[0].creation_time,
    }
    assert [m.name for m in registry.list(name_contains="LF")[0]] == ["clf"]

    registry.delete("clf")
    with pytest.raises(
        NotFound, match='Could not find model "arn:aws:sagemaker:us-east-1:000000000000:model/clf"'
    ):
        registry.describe("clf")
    with pytest.raises(NotFound):
        registry.delete("clf")


def test_create_is_idempotent_only_for_the_same_spec(registry: ModelRegistry, model_dir: Path) -> None:
    spec = ModelSpec.parse({"name": "m", "model_data": str(model_dir), "environment": {"A": "1", "B": "2"}})
    first = registry.create(spec)
    with pytest.raises(AlreadyExists, match="Cannot create already existing model"):
        registry.create(spec)
    assert registry.create(spec, exist_ok=True) == first
    same_reordered = ModelSpec.parse(
        {"environment": {"B": "2", "A": "1"}, "model_data": model_dir.as_uri(), "name": "M"}
    )
    assert registry.create(same_reordered, exist_ok=True) == first
    changed = ModelSpec.parse(
        {"name": "m", "model_data": str(model_dir), "environment": {"A": "9", "B": "2"}}
    )
    with pytest.raises(Conflict, match=r"different spec: environment \(keys A\)"):
        registry.create(changed, exist_ok=True)
    other_image = ModelSpec.parse(
        {"name": "m", "model_data": str(model_dir), "image": "x", "environment": {"A": "1", "B": "2"}}
    )
    with pytest.raises(Conflict, match="image"):
        registry.create(other_image, exist_ok=True)


def test_concurrent_create_if_missing(tmp_path: Path, model_dir: Path) -> None:
    path = tmp_path / "race.db"
    JobStore(path)
    spec = ModelSpec.parse({"name": "m", "model_data": str(model_dir)})
    barrier = threading.Barrier(6)
    results: list[str] = []

    def create() -> None:
        registry = ModelRegistry(JobStore(path))
        barrier.wait()
        results.append(registry.create(spec, exist_ok=True).arn)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1


def test_local_paths_are_checked_at_create(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        registry.create(ModelSpec.parse({"name": "m", "model_data": str(tmp_path / "missing")}))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"x")
    with pytest.raises(ValidationError, match="model folder or a model.tar.gz"):
        registry.create(ModelSpec.parse({"name": "m", "model_data": str(weights)}))
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"x")
    assert registry.create(ModelSpec.parse({"name": "m", "model_data": str(archive)})).spec.model_data == str(
        archive
    )


def test_from_sagemaker() -> None:
    spec = from_sagemaker(
        {
            "ModelName": "clf",
            "ExecutionRoleArn": "arn:aws:iam::000000000000:role/x",
            "PrimaryContainer": {
                "Image": "123.dkr.ecr.us-east-1.amazonaws.com/hf:latest",
                "ModelDataUrl": "s3://bucket/model.tar.gz",
                "Environment": {"HF_TASK": "text-classification"},
            },
            "Tags": [],
        }
    )
    assert spec == ModelSpec(
        name="clf",
        model_data="s3://bucket/model.tar.gz",
        environment={"HF_TASK": "text-classification"},
        image="123.dkr.ecr.us-east-1.amazonaws.com/hf:latest",
    )
    from_containers = from_sagemaker(
        {
            "ModelName": "c",
            "Containers": [
                {
                    "ModelDataSource": {
                        "S3DataSource": {
                            "S3Uri": "s3://bkt/model",
                            "S3DataType": "S3Prefix",
                            "CompressionType": "None",
                        }
                    }
                }
            ],
        }
    )
    assert from_containers.model_data == "s3://bkt/model/"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"ModelName": "m"}, "PrimaryContainer is required"),
        (
            {"ModelName": "m", "PrimaryContainer": {"Image": "local"}},
            "PrimaryContainer.ModelDataUrl is required",
        ),
        ({"ModelName": "m", "Containers": [{}, {}]}, "inference pipelines"),
        (
            {"ModelName": "m", "PrimaryContainer": {"ModelDataUrl": "s3://bkt/m", "Mode": "MultiModel"}},
            "Mode",
        ),
        (
            {"ModelName": "m", "PrimaryContainer": {"ModelPackageName": "p"}},
            "ModelPackageName is not supported",
        ),
        (
            {"ModelName": "m", "PrimaryContainer": {"ModelDataUrl": "s3://bkt/m"}, "Foo": 1},
            "unknown CreateModel field 'Foo'",
        ),
        (
            {
                "ModelName": "m",
                "PrimaryContainer": {"ModelDataUrl": "s3://bkt/m", "Environment": {"a-b": "1"}},
            },
            "Environment key",
        ),
        ({"ModelName": "m_1", "PrimaryContainer": {"ModelDataUrl": "s3://bkt/m"}}, "ModelName must be"),
        ({"PrimaryContainer": {"ModelDataUrl": "s3://bkt/m"}}, "ModelName is required"),
        (
            {"ModelName": "m", "PrimaryContainer": {"ModelDataUrl": "https://h/m.tar.gz"}},
            "^PrimaryContainer.ModelDataUrl: ",
        ),
    ],
)
def test_from_sagemaker_refusals(request_: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        from_sagemaker(request_)


def test_effective_environment_job_wins() -> None:
    assert effective_environment({"A": "model", "B": "model"}, {"B": "job", "C": "job"}) == {
        "A": "model",
        "B": "job",
        "C": "job",
    }
    assert effective_environment(None, None) == {}
