"""A ``predict_fn`` with a parameter too few: refused at start-up with a message saying how to fix it."""


def predict_fn(data):
    return data
