"""Classic SageMaker hooks that answer JSON to a CSV request, as most user scripts do.

With ``TransformOutput.Accept`` unset (the SageMaker SDK's ``Transformer(accept=None)``) no Accept header is sent, so
``output_fn`` gets the container's default, ``application/json``, and answers one JSON array per mini-batch, one
``[label, score]`` element per CSV row (the first column is an ID; the score sums the others). ``Accept: text/csv``
gets one ``label,score`` line per row instead. No model files are needed.
"""

import csv
import io
import json


def model_fn(model_dir):
    return {"threshold": 1.0}


def input_fn(input_data, content_type):
    if content_type != "text/csv":
        raise ValueError(f"this model reads text/csv, not {content_type}")
    text = input_data if isinstance(input_data, str) else input_data.decode("utf-8")
    return [row for row in csv.reader(io.StringIO(text)) if row]


def predict_fn(rows, model):
    scores = [round(sum(float(v) for v in row[1:]), 6) for row in rows]
    return [["high" if score > model["threshold"] else "low", score] for score in scores]


def output_fn(prediction, accept):
    if accept == "text/csv":
        return "".join(f"{label},{score}\n" for label, score in prediction), "text/csv"
    return json.dumps(prediction), "application/json"
