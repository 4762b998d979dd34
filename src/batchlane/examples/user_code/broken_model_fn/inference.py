"""A ``model_fn`` that raises: ``batchlane serve`` logs the traceback and exits non-zero."""


def model_fn(model_dir):
    raise RuntimeError("weights are corrupt (on purpose)")
