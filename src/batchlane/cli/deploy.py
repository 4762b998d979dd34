"""`batchlane deploy aws`: the SQS → Lambda → SageMaker stack on CloudFormation, created, updated or deleted.

The work is in :mod:`batchlane.aws.deploy`; boto3 is imported inside the command. docs/aws.md walks through it.
"""

from __future__ import annotations

import typer

deploy_app = typer.Typer(help="Deploy batchlane's queue automation to a cloud (AWS).", no_args_is_help=True)


@deploy_app.command("aws")
def aws(
    stack_name: str = typer.Option("batchlane", "--stack-name", help="CloudFormation stack name."),
    region: str | None = typer.Option(
        None, "--region", help="AWS region. Default: AWS_REGION / AWS_DEFAULT_REGION / your AWS config."
    ),
    delete: bool = typer.Option(
        False, "--delete", help="Delete the stack and wait (the queues are kept: they may hold requests)."
    ),
    artifact_bucket: str | None = typer.Option(
        None,
        "--artifact-bucket",
        help="S3 bucket for the Lambda package (must exist, in the stack's region).",
    ),
    artifact_prefix: str = typer.Option(
        "batchlane/lambda/", "--artifact-prefix", help="Key prefix of the Lambda package (ends with '/')."
    ),
    queue_name: str = typer.Option(
        "batchlane-jobs", "--queue-name", help="SQS queue name; its dead-letter queue is <name>-dlq."
    ),
    function_name: str = typer.Option(
        "batchlane-launcher",
        "--function-name",
        help="Name of the launching Lambda function; the retry function is <name>-retry.",
    ),
    data_bucket: str | None = typer.Option(
        None,
        "--data-bucket",
        help="Bucket of the transform inputs (the function checks input prefixes there).",
    ),
    model_name: str | None = typer.Option(
        None, "--model-name", help="SageMaker model for messages that name none; created if missing."
    ),
    model_data: str | None = typer.Option(
        None, "--model-data", help="s3:// URI of that model's model.tar.gz."
    ),
    image: str | None = typer.Option(
        None,
        "--image",
        help="Inference image of that model (ECR URI), e.g. the one `batchlane container push` printed.",
    ),
    role: str | None = typer.Option(
        None, "--role", help="ARN of the SageMaker execution role the model runs as."
    ),
    instance_type: str = typer.Option(
        "ml.m5.xlarge", "--instance-type", help="Instance type of the printed `queue send` line."
    ),
    instance_count: int = typer.Option(
        1, "--instance-count", min=1, max=100, help="Instance count of the printed `queue send` line."
    ),
    max_attempts: int = typer.Option(
        3,
        "--max-attempts",
        min=1,
        max=20,
        help="Attempts a request gets when its job fails after it started (1: no retry); then the DLQ.",
    ),
    alarm_email: str = typer.Option(
        "",
        "--alarm-email",
        help="E-mail subscribed to the dead-letter-queue alarm (confirm the mail AWS sends).",
    ),
    poll: float = typer.Option(5.0, "--poll", min=0.0, help="Seconds between looks at the stack's events."),
) -> None:
    """Build the Lambda package, upload it, and create or update the stack (queue, DLQ, launcher and retry functions, EventBridge rule, DLQ alarm), printing its events; re-running without changes does nothing.

    With --delete, delete the stack instead (only --stack-name and --region are used).
    """  # noqa: E501 - one line per paragraph, or --help breaks it mid-sentence
    from batchlane.aws import deploy as stack
    from batchlane.errors import ValidationError

    if delete:
        stack.delete(stack_name, region=region, echo=typer.echo, poll_s=poll)
        return
    required = {
        "--artifact-bucket": artifact_bucket,
        "--data-bucket": data_bucket,
        "--model-name": model_name,
        "--model-data": model_data,
        "--image": image,
        "--role": role,
    }
    missing = [flag for flag, value in required.items() if not value]
    if missing:
        raise ValidationError(f"deploy aws needs {', '.join(missing)}", field=missing[0].lstrip("-"))
    config = stack.StackConfig(
        artifact_bucket=str(artifact_bucket),
        data_bucket=str(data_bucket),
        model_name=str(model_name),
        model_image=str(image),
        model_data_url=str(model_data),
        role_arn=str(role),
        stack_name=stack_name,
        artifact_prefix=artifact_prefix,
        queue_name=queue_name,
        function_name=function_name,
        instance_type=instance_type,
        instance_count=instance_count,
        max_attempts=max_attempts,
        alarm_email=alarm_email,
    )
    result = stack.deploy(config, region=region, echo=typer.echo, poll_s=poll)
    typer.echo(f"stack {stack_name} {result.action}")
    typer.echo(f"queue URL: {result.queue_url}")
    typer.echo(f"dead-letter queue URL: {result.outputs.get('DeadLetterQueueUrl', '-')}")
    typer.echo("send a request with:")
    typer.echo("  " + result.send_command(str(data_bucket), instance_type, instance_count))


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
