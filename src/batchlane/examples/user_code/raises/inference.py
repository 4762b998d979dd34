"""A ``predict_fn`` that fails: the client gets a short 500, the log gets the traceback."""


def model_fn(model_dir):
    return object()


def predict_fn(data, model):
    raise ValueError("the model exploded on purpose\nsecond line that clients never see")
