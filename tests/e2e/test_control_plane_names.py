"""`batchlane control-plane` and its old name `batchlane server` start the same control plane."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlane.testing import running_server
from tests.servers import aws_client, clean_env

KEY, SECRET = "AKIDNAMES", "names-secret"


@pytest.mark.slow
@pytest.mark.parametrize("command", ["control-plane", "server"])
def test_both_names_start_the_control_plane(command: str, tmp_path: Path) -> None:
    env = clean_env(
        BATCHLANE_HOME=str(tmp_path), BATCHLANE_ACCESS_KEY_ID=KEY, BATCHLANE_SECRET_ACCESS_KEY=SECRET
    )
    log = tmp_path / "server.log"
    with running_server([command, "--workers", "0", "--no-worker"], env=env, log=log) as url:
        sagemaker = aws_client("sagemaker", url, KEY, SECRET)
        assert sagemaker.list_transform_jobs()["TransformJobSummaries"] == []
    assert "batchlane control-plane listening on" in log.read_text()
