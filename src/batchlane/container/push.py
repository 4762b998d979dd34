"""``batchlane container push``: log in to ECR, create the repository if missing, tag and push (build_and_push.sh).

The ECR calls go through boto3 (``describe_repositories``, ``create_repository``, ``get_authorization_token``) to
the region's endpoint, or to ``AWS_ENDPOINT_URL_ECR`` / ``AWS_ENDPOINT_URL`` when set (moto in tests); docker does
the login, tag and push. ``--dry-run`` prints the same steps as shell commands and touches neither AWS nor Docker.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from dataclasses import dataclass

from batchlane.container.docker import format_command, require_docker, run_docker
from batchlane.errors import AuthError, BatchlaneError, ValidationError

ACCOUNT_RE = re.compile(r"\d{12}")
# ECR's own rule for repository names.
REGISTRY_RE = re.compile(r"[A-Za-z0-9.-]+(:\d+)?")
REPOSITORY_RE = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")


@dataclass(frozen=True)
class PushPlan:
    """The local image and where it goes."""

    image: str
    account: str
    region: str
    repository: str
    tag: str
    registry_host: str | None = None  # another registry host than the account's ECR one

    @property
    def registry(self) -> str:
        if self.registry_host:
            return self.registry_host
        suffix = "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"
        return f"{self.account}.dkr.ecr.{self.region}.{suffix}"

    @property
    def remote(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    def docker_commands(self) -> list[list[str]]:
        """Login, tag, push (the login's password comes on stdin)."""
        return [
            ["docker", "login", "--username", "AWS", "--password-stdin", self.registry],
            ["docker", "tag", self.image, self.remote],
            ["docker", "push", self.remote],
        ]

    def dry_run_lines(self) -> list[str]:
        """The whole push as shell commands (AWS CLI lines standing for the boto3 calls)."""
        region = ["--region", self.region]
        describe = ["aws", "ecr", "describe-repositories", "--repository-names", self.repository, *region]
        create = ["aws", "ecr", "create-repository", "--repository-name", self.repository, *region]
        login, tag, push = self.docker_commands()
        return [
            f"{format_command(describe)} >/dev/null 2>&1 || {format_command(create)}",
            f"{format_command(['aws', 'ecr', 'get-login-password', *region])} | {format_command(login)}",
            format_command(tag),
            format_command(push),
        ]


def plan_push(
    image: str,
    *,
    account: str | None,
    region: str | None,
    repository: str | None,
    tag: str | None,
    registry: str | None = None,
) -> PushPlan:
    """Validate the arguments; ``repository``/``tag`` default to the local image's name and tag."""
    name, _, local_tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
    repository = repository or name.split("/")[-1]
    if not REPOSITORY_RE.fullmatch(repository):
        raise ValidationError(
            f"--repository {repository!r} is not a valid ECR repository name", field="repository"
        )
    if not region:
        raise ValidationError("no region: pass --region or set AWS_DEFAULT_REGION", field="region")
    if account is not None and not ACCOUNT_RE.fullmatch(account):
        raise ValidationError(f"--account must be 12 digits, got {account!r}", field="account")
    if registry is not None and not REGISTRY_RE.fullmatch(registry):
        raise ValidationError(f"--registry must be HOST or HOST:PORT, got {registry!r}", field="registry")
    return PushPlan(image, account or "", region, repository, tag or local_tag or "latest", registry)


def ecr_client(region: str):
    import boto3

    return boto3.client("ecr", region_name=region)


def caller_account(region: str) -> str:
    """The account of the current credentials (STS GetCallerIdentity)."""
    import boto3

    return boto3.client("sts", region_name=region).get_caller_identity()["Account"]


def ensure_repository(ecr, plan: PushPlan) -> bool:
    """Create the repository when it does not exist; True when it was created."""
    try:
        ecr.describe_repositories(registryId=plan.account, repositoryNames=[plan.repository])
        return False
    except ecr.exceptions.RepositoryNotFoundException:
        ecr.create_repository(repositoryName=plan.repository)
        return True


def login_password(ecr, plan: PushPlan) -> str:
    """The docker password from ``get_authorization_token`` (its token is base64 of ``AWS:<password>``)."""
    data = ecr.get_authorization_token(registryIds=[plan.account])["authorizationData"]
    if not data:
        raise AuthError("ECR GetAuthorizationToken returned no authorization data")
    user, _, password = base64.b64decode(data[0]["authorizationToken"]).decode().partition(":")
    if user != "AWS" or not password:
        raise AuthError("ECR GetAuthorizationToken returned a token that is not AWS:<password>")
    return password


def push(plan: PushPlan, *, echo=print) -> PushPlan:
    """Push for real: ECR calls first (so a credentials problem shows before docker does anything), then docker."""
    from botocore.exceptions import BotoCoreError, ClientError

    docker = require_docker()
    try:
        if not plan.account:
            plan = dataclasses.replace(plan, account=caller_account(plan.region))
        ecr = ecr_client(plan.region)
        if ensure_repository(ecr, plan):
            echo(f"created ECR repository {plan.repository} in {plan.region}")
        password = login_password(ecr, plan)
    except (BotoCoreError, ClientError) as exc:
        raise BatchlaneError(f"ECR: {exc}") from None
    login, tag, push_cmd = plan.docker_commands()
    run_docker([docker, *login[1:]], input_text=password)
    run_docker([docker, *tag[1:]])
    run_docker([docker, *push_cmd[1:]])
    echo(f"pushed {plan.remote}")
    return plan
