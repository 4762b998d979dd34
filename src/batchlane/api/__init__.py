"""The control plane: SageMaker's and SQS's APIs over batchlane's job store and embedded queue (``batchlane control-plane``).

``create_app(ServerConfig(...))`` builds the ASGI app; ``run_server(config)`` serves it under uvicorn,
``background_server(config)`` on a thread. See
docs/control-plane.md.
"""

from batchlane.api.app import create_app
from batchlane.api.config import ServerConfig, load_keys
from batchlane.api.server import background_server, run_server

__all__ = ["ServerConfig", "background_server", "create_app", "load_keys", "run_server"]
