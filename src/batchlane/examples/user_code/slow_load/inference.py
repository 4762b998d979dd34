"""A ``model_fn`` that blocks until a file named ``release`` appears in the model folder (at most 120 s)."""

import os
import time


def model_fn(model_dir):
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(model_dir, "release")):
        if time.monotonic() > deadline:
            raise TimeoutError("no release file within 120 s")
        time.sleep(0.05)
    return "loaded"


def predict_fn(data, model):
    return [model for _ in data] if isinstance(data, list) else [model]
