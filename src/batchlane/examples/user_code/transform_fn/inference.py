"""One ``transform_fn`` instead of input/predict/output_fn; it answers JSON Lines with a tuple return."""

import json
import os


def model_fn(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        id2label = json.load(f)["id2label"]
    return [id2label[key] for key in sorted(id2label, key=int)]


def transform_fn(model, input_data, content_type, accept):
    if isinstance(input_data, bytes):  # JSON Lines and text arrive as bytes
        input_data = input_data.decode("utf-8")
    texts = [line for line in input_data.splitlines() if line.strip()]
    if content_type in ("application/json", "application/jsonlines"):
        texts = [json.loads(line)["text"] for line in texts]
    labels = [next((label for label in model if label in text.lower()), model[0]) for text in texts]
    body = "".join(json.dumps({"label": label, "accept": accept}) + "\n" for label in labels)
    return body, "application/jsonlines"
