"""The model registry: CreateModel / DescribeModel / ListModels / DeleteModel over the job store.

``ModelRegistry.create`` is idempotent on request: the same name with the same spec returns the existing model when
``exist_ok`` (and is a ``Conflict`` otherwise, like SageMaker's "Cannot create already existing model"); the same name
with a different spec is always a ``Conflict`` naming the fields that differ (docs/reliability.md). Names are unique
case-insensitively (see ``jobs.store``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchlane import spec_diff
from batchlane.errors import AlreadyExists, Conflict
from batchlane.jobs.store import JobStore, ModelRow
from batchlane.models.spec import EXTRAS_KEY, ModelSpec


@dataclass(frozen=True)
class RegisteredModel:
    """A model in the registry."""

    name: str
    arn: str
    spec: ModelSpec
    creation_time: datetime

    @classmethod
    def _from_row(cls, row: ModelRow) -> RegisteredModel:
        return cls(row.name, row.arn, ModelSpec.parse({**row.spec, "name": row.name}), row.creation_time)

    def summary(self) -> dict[str, Any]:
        """The ModelSummary ListModels returns."""
        return {"ModelName": self.name, "ModelArn": self.arn, "CreationTime": self.creation_time}

    def describe(self) -> dict[str, Any]:
        """The DescribeModel response; ``serve_command``/``serve_url`` appear under the ``Batchlane`` key."""
        container: dict[str, Any] = {}
        if self.spec.image:
            container["Image"] = self.spec.image
        if self.spec.model_data_url:
            container["ModelDataUrl"] = self.spec.model_data_url
        container["Environment"] = dict(self.spec.environment)
        answer: dict[str, Any] = {
            "ModelName": self.name,
            "PrimaryContainer": container,
            "CreationTime": self.creation_time,
            "ModelArn": self.arn,
        }
        extras = {}
        if self.spec.serve_command is not None:
            extras["ServeCommand"] = list(self.spec.serve_command)
        if self.spec.serve_url is not None:
            extras["ServeUrl"] = self.spec.serve_url
        if extras:
            answer[EXTRAS_KEY] = extras
        return answer


def _differences(old: ModelSpec, new: ModelSpec) -> list[str]:
    fields = ("model_data", "image", "serve_command", "serve_url", "environment")
    # Environment by key names only: values may be long or sensitive.
    return spec_diff.differences(
        {f: getattr(old, f) for f in fields}, {f: getattr(new, f) for f in fields}, keys_only={"environment"}
    )


class ModelRegistry:
    """CreateModel/DescribeModel/ListModels/DeleteModel over a ``JobStore``."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def create(self, spec: ModelSpec, *, exist_ok: bool = False, check_paths: bool = True) -> RegisteredModel:
        """Register ``spec``. Same name and spec: the existing model if ``exist_ok``, else ``AlreadyExists``; same
        name, other spec: ``Conflict`` naming the differences. ``check_paths`` checks local model data exists."""
        if check_paths:
            spec.check_local_paths()
        data = spec.model_dump(mode="json", exclude={"name"})
        try:
            return RegisteredModel._from_row(self.store.create_model(spec.name, data, spec.fingerprint()))
        except AlreadyExists as exc:
            existing = RegisteredModel._from_row(exc.existing)  # type: ignore[arg-type]
            differences = _differences(existing.spec, spec)
            if differences:
                raise Conflict(
                    f"model {existing.name} already exists with a different spec: {'; '.join(differences)}",
                    field="ModelName",
                ) from None
            if exist_ok:
                return existing
            raise

    def get(self, name: str) -> RegisteredModel:
        """The model; ``NotFound`` if there is none."""
        return RegisteredModel._from_row(self.store.get_model(name))

    def describe(self, name: str) -> dict[str, Any]:
        """The DescribeModel response for ``name``."""
        return self.get(name).describe()

    def list(
        self,
        *,
        name_contains: str | None = None,
        creation_time_after: datetime | None = None,
        creation_time_before: datetime | None = None,
        sort_by: str = "CreationTime",
        sort_order: str = "Descending",
        max_results: int = 10,
        next_token: str | None = None,
    ) -> tuple[list[RegisteredModel], str | None]:
        """One page of models with ListModels' filters and defaults; the token is None on the last page."""
        rows, token = self.store.list_models(
            name_contains=name_contains,
            creation_time_after=creation_time_after,
            creation_time_before=creation_time_before,
            sort_by=sort_by,
            sort_order=sort_order,
            max_results=max_results,
            next_token=next_token,
        )
        return [RegisteredModel._from_row(row) for row in rows], token

    def delete(self, name: str) -> None:
        """Delete the model; ``NotFound`` if there is none."""
        self.store.delete_model(name)
