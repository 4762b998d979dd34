"""The model process boundary as pure rules: which ``Environment`` entries are refused, the clean environment a model
process gets, and where user code may be loaded from (symlinks and paths resolved)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import batchlane
from batchlane.errors import ModelLoadError, ValidationError
from batchlane.models import ModelSpec, from_sagemaker
from batchlane.serving.classifier import ClassifierHandler
from batchlane.serving.code_paths import code_dir
from batchlane.serving.environment import check_environment, model_process_environment, refusal
from batchlane.serving.handler import resolve_hooks
from batchlane.settings import ServeSettings
from batchlane.transform.spec import validate_request
from tests.models import transform_request


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LD_PRELOAD", "/tmp/x.so"),
        ("LD_LIBRARY_PATH", "/tmp"),
        ("LD_AUDIT", "/tmp/a.so"),
        ("DYLD_INSERT_LIBRARIES", "/tmp/x.dylib"),
        ("PYTHONPATH", "/tmp"),
        ("PYTHONHOME", "/tmp"),
        ("PYTHONSTARTUP", "/tmp/s.py"),
        ("PYTHONBREAKPOINT", "evil.hook"),
        ("PYTHONWARNINGS", "ignore::evil.Category"),
        ("PATH", "/tmp/bin"),
        ("GCONV_PATH", "/tmp"),
        ("BATCHLANE_ONNX_CACHE", "/tmp/graphs"),
        ("BATCHLANE_OPENVINO_CACHE", "/tmp/ir"),
        ("BATCHLANE_HOME", "/tmp/home"),
        ("SAGEMAKER_SUBMIT_DIRECTORY", "/tmp/code"),
        ("SAGEMAKER_SUBMIT_DIRECTORY", "file:///tmp/code"),
        ("SAGEMAKER_SUBMIT_DIRECTORY", "relative/code"),
        ("SAGEMAKER_SUBMIT_DIRECTORY", "/opt/ml/model/../../../tmp"),
        ("SAGEMAKER_SUBMIT_DIRECTORY", "/opt/ml/modelx/code"),
        ("SAGEMAKER_PROGRAM", "../evil.py"),
        ("SAGEMAKER_PROGRAM", "/tmp/evil.py"),
        ("SAGEMAKER_PROGRAM", "sub\\evil.py"),
    ],
)
def test_variables_that_change_what_code_loads_are_refused(key: str, value: str) -> None:
    assert refusal(key, value) is not None
    with pytest.raises(ValidationError) as caught:
        check_environment({"OK": "1", key: value}, "PrimaryContainer.Environment")
    assert caught.value.field == f"PrimaryContainer.Environment.{key}"
    assert f"at 'PrimaryContainer.Environment.{key}' failed to satisfy constraint" in caught.value.message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("PYTHONUNBUFFERED", "1"),
        ("PYTHONHASHSEED", "0"),
        ("PYTHONIOENCODING", "utf-8"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("ld_preload", "/tmp/x.so"),  # the loader reads upper-case names only
        ("HF_TASK", "text-classification"),
        ("BATCHLANE_TOP_K", "2"),
        ("AWS_SECRET_ACCESS_KEY", "the model's own"),  # a user's own credentials for their model are theirs
        ("SAGEMAKER_SUBMIT_DIRECTORY", "s3://bucket/prefix/sourcedir.tar.gz"),
        ("SAGEMAKER_SUBMIT_DIRECTORY", "/opt/ml/model/code"),
        ("SAGEMAKER_SUBMIT_DIRECTORY", "file:///opt/ml/model/code"),
        ("SAGEMAKER_SUBMIT_DIRECTORY", "/opt/ml/model"),
        ("SAGEMAKER_PROGRAM", "serve.py"),
        ("SAGEMAKER_PROGRAM", "custom"),
    ],
)
def test_ordinary_variables_are_accepted(key: str, value: str) -> None:
    assert refusal(key, value) is None
    check_environment({key: value})


def test_every_create_path_applies_the_rule() -> None:
    with pytest.raises(ValidationError, match=r"'Environment\.LD_PRELOAD' failed to satisfy constraint"):
        validate_request(transform_request("j", "/in/", "/out/", Environment={"LD_PRELOAD": "/x.so"}))
    with pytest.raises(ValidationError, match=r"'PrimaryContainer\.Environment\.PYTHONPATH'"):
        from_sagemaker(
            {
                "ModelName": "m",
                "PrimaryContainer": {"ModelDataUrl": "s3://my-bucket/m", "Environment": {"PYTHONPATH": "/x"}},
            }
        )
    with pytest.raises(ValidationError, match=r"environment\.PATH"):
        ModelSpec.parse({"name": "m", "model_data": "s3://my-bucket/m", "environment": {"PATH": "/tmp/bin"}})


def test_the_model_process_gets_runtime_variables_and_the_jobs_never_the_credentials() -> None:
    parent = {
        "PATH": "/usr/bin",
        "HOME": "/home/op",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "0",
        "BATCHLANE_DEVICE": "cpu",
        "BATCHLANE_INSTALL_REQUIREMENTS": "false",
        "BATCHLANE_SECRET_ACCESS_KEY": "control-plane-secret",
        "BATCHLANE_ACCESS_KEY_ID": "AKID",
        "BATCHLANE_CREDENTIALS_FILE": "/etc/batchlane/keys.ini",
        "AWS_ACCESS_KEY_ID": "AKIDAWS",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "AWS_SESSION_TOKEN": "aws-token",
        "AWS_PROFILE": "prod",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/elsewhere",
        "LD_PRELOAD": "/operator/lib.so",
        "PYTHONPATH": "/somewhere/else",
        "SOMETHING_ELSE": "x",
    }
    requested = {"SAGEMAKER_BATCH": "true", "JOB_VAR": "j", "BATCHLANE_DEVICE": "cuda"}

    env = model_process_environment(parent, requested)

    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/op",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "0",
        "BATCHLANE_DEVICE": "cuda",  # the job's Environment wins over the operator's default
        "BATCHLANE_INSTALL_REQUIREMENTS": "false",  # `--no-install-requirements` for every model it starts
        "SAGEMAKER_BATCH": "true",
        "JOB_VAR": "j",
    }


def test_the_runner_passes_its_own_import_path_only() -> None:
    own = str(Path(os.path.realpath(batchlane.__file__)).parent.parent)
    env = model_process_environment({"PYTHONPATH": os.pathsep.join(["/user/stuff", own])}, {})
    assert env["PYTHONPATH"] == own
    with pytest.raises(ValidationError, match="PYTHONPATH"):
        model_process_environment({"PYTHONPATH": own}, {"PYTHONPATH": "/user/stuff"})


def _settings(model_dir: Path, **env: str) -> ServeSettings:
    return ServeSettings.from_env(env, model_dir=model_dir, device="cpu")


def _model(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('x')\n")
    return model


def _resolve(model: Path, **env: str):
    settings = _settings(model, **env)
    return resolve_hooks(settings, model, ClassifierHandler(settings))


def test_a_symlinked_module_outside_the_model_is_refused_before_import(tmp_path: Path) -> None:
    model = _model(tmp_path)
    (model / "code" / "inference.py").symlink_to(tmp_path / "outside" / "evil.py")

    with pytest.raises(ModelLoadError, match=r"inference\.py \(resolves to .*evil\.py\) is outside"):
        _resolve(model)
    assert not (tmp_path / "ran").exists()


def test_a_symlinked_requirements_file_outside_the_model_is_refused_before_pip_reads_it(
    tmp_path: Path,
) -> None:
    model = _model(tmp_path)
    (tmp_path / "outside" / "requirements.txt").write_text("--index-url http://127.0.0.1:9/evil\nanything\n")
    (model / "code" / "requirements.txt").symlink_to(tmp_path / "outside" / "requirements.txt")

    with pytest.raises(ModelLoadError, match=r"code/requirements\.txt \(resolves to .*\) is outside"):
        _resolve(model)
    assert not (tmp_path / "ran").exists()


def test_a_symlinked_code_folder_outside_the_model_is_refused(tmp_path: Path) -> None:
    model = _model(tmp_path)
    (model / "code").rmdir()
    (model / "code").symlink_to(tmp_path / "outside")
    (tmp_path / "outside" / "inference.py").write_text((tmp_path / "outside" / "evil.py").read_text())

    with pytest.raises(ModelLoadError, match="the code folder .* is outside"):
        _resolve(model)
    assert not (tmp_path / "ran").exists()


def test_a_program_path_leaving_the_code_folder_is_refused(tmp_path: Path) -> None:
    model = _model(tmp_path)
    with pytest.raises(ModelLoadError, match="is outside"):
        _resolve(model, SAGEMAKER_PROGRAM="../../outside/evil.py")
    assert not (tmp_path / "ran").exists()


def test_a_link_inside_the_model_is_fine(tmp_path: Path) -> None:
    model = _model(tmp_path)
    (model / "shared.py").write_text("def predict_fn(data, model):\n    return data\n")
    (model / "code" / "inference.py").symlink_to(model / "shared.py")
    assert _resolve(model).user_hooks == ["predict_fn"]


def test_sagemakers_model_path_means_the_model_folder(tmp_path: Path) -> None:
    model = _model(tmp_path)
    assert code_dir(_settings(model, SAGEMAKER_SUBMIT_DIRECTORY="/opt/ml/model/code"), model) == Path(
        os.path.realpath(model / "code")
    )
    with pytest.raises(ModelLoadError, match="SAGEMAKER_SUBMIT_DIRECTORY"):
        code_dir(_settings(model, SAGEMAKER_SUBMIT_DIRECTORY="/opt/ml/model/../outside"), model)
    remote = _settings(model, SAGEMAKER_SUBMIT_DIRECTORY="s3://bucket/sourcedir.tar.gz")
    assert code_dir(remote, model) == Path(os.path.realpath(model / "code"))


def test_the_runner_checks_again_before_it_starts_a_model_process(tmp_path: Path) -> None:
    """A job or model stored before these rules existed is refused when its model process would start."""
    from batchlane.transform.container import ModelContainer

    marker = tmp_path / "started"
    container = ModelContainer(serve_command=["touch", str(marker)], env={"LD_PRELOAD": "/tmp/x.so"})
    with pytest.raises(ValidationError, match=r"'Environment\.LD_PRELOAD'"):
        container.start()
    assert container.process is None and not marker.exists()
