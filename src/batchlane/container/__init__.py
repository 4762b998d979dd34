"""batchlane's container image: its entry points (``serve``, ``train``) and ``batchlane container build|push``."""
