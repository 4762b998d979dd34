"""Where a transform job runs. ``local``: this machine (in-process, or a detached process)."""
