"""The SageMaker Python SDK's local mode runs a batch transform with the batchlane image.

Local mode writes a docker-compose file (its own bridge network `sagemaker-local`, port 8080 of the container
published on ``local.serving_port``), starts the image with `serve`, waits for /ping, reads /execution-parameters and
posts the input's records to /invocations, as SageMaker's batch transform does. It needs docker-compose (Debian's
`docker-compose` package, or the `docker compose` plugin).
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pytest

from batchlane.testing import free_port


@pytest.fixture()
def sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
    }.items():
        monkeypatch.setenv(key, value)


def test_local_mode_transformer_runs_a_batch_transform_with_the_image(
    batchlane_image: str, tiny_bert_dir: Path, tmp_path: Path, sdk_env: None
) -> None:
    assert shutil.which("docker-compose") or shutil.which("docker"), "local mode needs docker-compose"
    import boto3
    from sagemaker.local import LocalSession
    from sagemaker.model import Model

    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as archive:
        for item in tiny_bert_dir.iterdir():
            archive.add(item, arcname=item.name)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "complaints.csv").write_text(
        "card charged twice\nsomeone stole my identity\nrude agent\n"
    )
    (tmp_path / "in" / "more.csv").write_text("a fee I never agreed to\n")
    session = LocalSession(boto_session=boto3.Session(region_name="us-east-1"))
    session.config = {
        "local": {"local_code": True, "serving_port": free_port(), "container_root": str(tmp_path)},
    }
    model = Model(
        image_uri=batchlane_image,
        model_data=f"file://{tmp_path}/model.tar.gz",
        role="arn:aws:iam::123456789012:role/SageMakerRole",
        env={"OMP_NUM_THREADS": "1"},
        sagemaker_session=session,
    )
    transformer = model.transformer(
        instance_count=1,
        instance_type="local",
        output_path=f"file://{tmp_path}/out",
        strategy="MultiRecord",
        accept="text/csv",
        assemble_with="Line",
    )
    # logs=False: local mode has no CloudWatch Logs; the container's output goes to this process's stdout.
    transformer.transform(
        f"file://{tmp_path}/in", content_type="text/csv", split_type="Line", wait=True, logs=False
    )

    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["complaints.csv.out", "more.csv.out"]
    # Local mode joins each mini-batch's response with a newline of its own, after the one that ends the response.
    rows = (out / "complaints.csv.out").read_text().rstrip("\n").splitlines()
    assert len(rows) == 3
    for row in rows:
        label, score = row.split(",")
        assert label in {"billing", "fraud", "service"} and 0 < float(score) <= 1
    assert len((out / "more.csv.out").read_text().rstrip("\n").splitlines()) == 1
