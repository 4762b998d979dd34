"""One result per mini-batch, as many hand-written handlers answer: ``{"predictions": [...]}`` for the whole payload.

SageMaker writes such a response as returned; so does batchlane, with a warning that the model answered 1 result
for N records (``--record-count strict`` makes it an error). No model files are needed.
"""

import json


def model_fn(model_dir):
    return None


def input_fn(input_data, content_type):
    text = input_data if isinstance(input_data, str) else input_data.decode("utf-8")
    return [line for line in text.splitlines() if line.strip()]


def predict_fn(lines, model):
    return {"predictions": [len(line) for line in lines]}


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
