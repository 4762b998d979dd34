"""batchlane: SageMaker-compatible batch transform and inference serving for transformer text classifiers."""

__version__ = "0.1.0"
