"""The ``context`` object handed to user hooks that take one, shaped like the model servers SageMaker code targets.

SageMaker ``inference.py`` files were written against Multi Model Server / TorchServe, whose context offers
``system_properties`` (``model_dir``, ``gpu_id``, ``batch_size``, ``server_name``), ``model_name``, ``manifest``, and
per-request access through ``request_processor[0].get_request_property(...)`` / ``get_request_header(0, ...)``.
``Context`` offers the same names. Hooks called at start-up (``model_fn`` …) get a context without a request; each
invocation gets its own copy with that request's headers, so concurrent requests never share one.

Header lookups ignore case (``"Content-Type"`` and ``"content-type"`` both work).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class Headers(dict):
    """A ``dict`` of request headers whose lookups ignore case (keys are stored lower-cased)."""

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        super().__init__((key.lower(), value) for key, value in pairs)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


class RequestProcessor:
    """One request's headers plus the response status/headers user code may set (MMS ``RequestProcessor``)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._request_headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.status_code = 200
        self.reason_phrase: str | None = None
        self.response_headers: dict[str, str] = {}

    def get_request_property(self, key: str) -> str | None:
        return self._request_headers.get(key)

    def get_request_properties(self) -> Headers:
        return self._request_headers

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self.status_code = code
        self.reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self.status_code

    def get_response_status_phrase(self) -> str | None:
        return self.reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self.response_headers[key.lower()] = value

    def get_response_header(self) -> dict[str, str]:
        return self.response_headers


class Context:
    """What a hook's ``context`` parameter receives (see the module docstring for the names it offers)."""

    def __init__(
        self,
        model_name: str,
        model_dir: str,
        *,
        gpu_id: int | None = None,
        batch_size: int = 1,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.model_name = model_name
        self.manifest: dict[str, Any] = {"model": {"modelName": model_name}}
        self._system_properties: dict[str, Any] = {
            "model_dir": model_dir,
            "gpu_id": gpu_id,
            "batch_size": batch_size,
            "server_name": "batchlane",
        }
        # ``headers=None`` is the start-up context (no request); ``{}`` is a request that sent no headers.
        self.request_processor: list[RequestProcessor] = (
            [] if headers is None else [RequestProcessor(headers)]
        )
        self.request_ids: dict[int, str] = {0: request_id} if request_id else {}
        self.metrics = _NoMetrics()

    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    def for_request(self, headers: Mapping[str, str], request_id: str | None = None) -> Context:
        """A copy of this context carrying one request's headers."""
        return Context(
            self.model_name,
            self._system_properties["model_dir"],
            gpu_id=self._system_properties["gpu_id"],
            batch_size=self._system_properties["batch_size"],
            headers=headers,
            request_id=request_id,
        )

    def _processor(self, idx: int) -> RequestProcessor:
        if idx >= len(self.request_processor):
            raise IndexError(f"no request {idx} in this context (there is one request per invocation)")
        return self.request_processor[idx]

    def get_request_id(self, idx: int = 0) -> str | None:
        return self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self._processor(idx).get_request_property(key)

    def get_all_request_header(self, idx: int = 0) -> Headers:
        return self._processor(idx).get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self._processor(idx).add_response_property("content-type", value)

    def get_response_content_type(self, idx: int = 0) -> str | None:
        return self._processor(idx).get_response_header().get("content-type")

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self._processor(idx).add_response_property(key, value)

    def get_response_headers(self, idx: int = 0) -> dict[str, str]:
        return self._processor(idx).get_response_header()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self._processor(idx).report_status(code, phrase)

    # MMS's spelling of the same call.
    set_http_response_status = set_response_status

    def get_response_status(self, idx: int = 0) -> tuple[int, str | None]:
        processor = self._processor(idx)
        return processor.get_response_status_code(), processor.get_response_status_phrase()

    get_http_response_status = get_response_status


class _NoMetrics:
    """Accepts the MMS/TorchServe metric calls user code makes (``context.metrics.add_time(...)``) and drops them."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None
