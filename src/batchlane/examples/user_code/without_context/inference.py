"""Classic SageMaker hooks without ``context``: a keyword model that needs no framework.

The "model" picks the first label (from the model's config.json) that occurs in the text, else the first label.
"""

import csv
import io
import json
import os


def model_fn(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        id2label = json.load(f)["id2label"]
    return [id2label[key] for key in sorted(id2label, key=int)]


def input_fn(request_body, request_content_type):
    if request_content_type == "application/json":
        data = json.loads(request_body)  # str, as in the SageMaker toolkit
        return data["inputs"] if isinstance(data, dict) else data
    if request_content_type == "text/csv":
        return [row[0] for row in csv.reader(io.StringIO(request_body)) if row]
    raise ValueError(f"unsupported content type {request_content_type}")


def predict_fn(input_data, model):
    return [next((label for label in model if label in text.lower()), model[0]) for text in input_data]


def output_fn(prediction, content_type):
    if content_type == "text/csv":
        return "".join(label + "\n" for label in prediction)
    return json.dumps(prediction)
