"""Running the inference container under uvicorn (what ``batchlane serve`` does)."""

from __future__ import annotations

import logging

from batchlane.errors import ModelLoadError
from batchlane.settings import ServeSettings

logger = logging.getLogger(__name__)

# SageMaker sends SIGKILL 30 s after SIGTERM; finish in-flight requests well before that.
GRACEFUL_SHUTDOWN_S = 25
# Batch clients reuse connections between mini-batches; keep them open longer than uvicorn's 5 s default.
KEEP_ALIVE_S = 75


def run_server(settings: ServeSettings) -> None:
    """Serve until SIGINT/SIGTERM. Start-up errors raise ``BatchlaneError`` before the port opens.

    When the model fails to load, the server stops at once and ``ModelLoadError`` is raised with the one-line
    reason, so the process exits non-zero and a launcher polling ``/ping`` learns quickly (the traceback is logged).
    """
    import uvicorn

    from batchlane.serving.app import create_app

    server: uvicorn.Server | None = None

    def stop(_exc: BaseException) -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_load_failure=stop)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep the CLI's logging set-up
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run()
    loader = app.state.loader
    if loader.state == "failed":
        raise ModelLoadError(f"the model failed to load: {loader.error}")
