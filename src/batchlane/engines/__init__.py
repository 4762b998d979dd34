"""Where a transform job runs, behind one seam: ``get_engine(name, store)`` gives an ``Engine`` (engines/base.py).
``local``: this machine (in-process, in the foreground, or a detached process)."""

from batchlane.engines.base import ENGINE_NAMES, Engine, EngineName, get_engine

__all__ = ["ENGINE_NAMES", "Engine", "EngineName", "get_engine"]
