"""`batchlane container build|push`: the batchlane image (docs/containers.md). Thin over batchlane.container."""

from __future__ import annotations

import os
from pathlib import Path

import typer

container_app = typer.Typer(
    help="Build batchlane's SageMaker-compatible image and push it to Amazon ECR (docs/containers.md).",
    no_args_is_help=True,
)


@container_app.command("build")
def build(
    tag: str = typer.Option("batchlane:latest", "--tag", "-t", help="Name and tag of the image built."),
    gpu: bool = typer.Option(
        False,
        "--gpu",
        help="Build deploy/Dockerfile.gpu (CUDA runtime base, PyPI's CUDA torch) instead of the CPU image.",
    ),
    base_image: str = typer.Option(
        None,
        "--base-image",
        help="The BASE_IMAGE build argument (default python:3.11-slim; with --gpu an nvidia/cuda runtime image).",
        show_default=False,
    ),
    network: str = typer.Option(
        "default",
        "--network",
        help="docker build's network for its RUN steps: default, host or none (host where the daemon has no bridge).",
    ),
    extras: str = typer.Option(
        None,
        "--extras",
        help="batchlane extras installed in the image, comma-separated (the EXTRAS build argument; default ml,train,aws).",
        show_default=False,
    ),
    torch_wheel: Path = typer.Option(
        None,
        "--torch-wheel",
        help="The CPU torch wheel pinned in constraints.txt (default: found in pip's find-links folders).",
        show_default=False,
    ),
    context: Path = typer.Option(
        Path("."), "--context", help="The batchlane checkout to build from (holds deploy/Dockerfile)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the staging and docker commands; run nothing."
    ),
) -> None:
    """Build the image: stage the CPU torch wheel into deploy/wheels/, then docker build."""
    from batchlane.container.build import plan_build, stage, staging_command
    from batchlane.container.docker import format_command, require_docker, run_docker

    plan = plan_build(
        context,
        tag=tag,
        gpu=gpu,
        base_image=base_image,
        network=network,
        extras=extras,
        torch_wheel=torch_wheel,
    )
    if dry_run:
        for line in (staging_command(plan), format_command(plan.argv)):
            if line:
                typer.echo(line)
        return
    docker = require_docker()
    stage(plan)
    run_docker([docker, *plan.argv[1:]])
    typer.echo(f"built {plan.tag}")


@container_app.command("push")
def push(
    image: str = typer.Option("batchlane:latest", "--image", "-i", help="The local image to push."),
    account: str = typer.Option(
        None,
        "--account",
        help="AWS account ID of the registry (default: the credentials' account, from STS).",
        show_default=False,
    ),
    region: str = typer.Option(
        None,
        "--region",
        help="AWS region of the registry (default: AWS_REGION / AWS_DEFAULT_REGION).",
        show_default=False,
    ),
    repository: str = typer.Option(
        None,
        "--repository",
        help="ECR repository (default: the image's name); created if missing.",
        show_default=False,
    ),
    tag: str = typer.Option(None, "--tag", help="Tag in ECR (default: the image's tag).", show_default=False),
    registry: str = typer.Option(
        None,
        "--registry",
        help="Push to this registry host[:port] instead of <account>.dkr.ecr.<region>.amazonaws.com (a mirror or "
        "proxy of ECR); docker still logs in with ECR's token.",
        show_default=False,
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print the commands (as AWS CLI and docker lines); call neither AWS nor Docker.",
    ),
) -> None:
    """Push an image to ECR: create the repository if missing, log in with get_authorization_token, tag, push."""
    from batchlane.container import push as push_mod
    from batchlane.errors import ValidationError

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    plan = push_mod.plan_push(
        image, account=account, region=region, repository=repository, tag=tag, registry=registry
    )
    if dry_run:
        if not plan.account:
            raise ValidationError(
                "--dry-run needs --account (it calls no AWS API to look it up)", field="account"
            )
        for line in plan.dry_run_lines():
            typer.echo(line)
        return
    push_mod.push(plan, echo=typer.echo)


def register(app: typer.Typer) -> None:
    app.add_typer(container_app, name="container")
