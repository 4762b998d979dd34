"""Hooks that take ``context``, as written for the Hugging Face / TorchServe containers."""

import json

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def model_fn(model_dir, context):
    gpu_id = context.system_properties.get("gpu_id")
    device = f"cuda:{gpu_id}" if gpu_id is not None and torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = (
        AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).to(device).eval()
    )
    return {"model": model, "tokenizer": tokenizer, "device": device}


def input_fn(input_data, content_type, context):
    if content_type != "application/json":
        raise ValueError(f"this model takes application/json, not {content_type}")
    data = json.loads(input_data)  # a str: the container decodes JSON bodies
    inputs = data["inputs"]
    return [inputs] if isinstance(inputs, str) else inputs


def predict_fn(texts, model, context):
    tokens = model["tokenizer"](texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    tokens.pop("token_type_ids", None)
    with torch.inference_mode():
        probs = model["model"](**tokens.to(model["device"])).logits.softmax(-1)
    id2label = model["model"].config.id2label
    scores, labels = probs.max(-1)
    return [{"label": id2label[int(i)], "score": float(s)} for s, i in zip(scores, labels, strict=True)]


def output_fn(prediction, accept, context):
    # Custom attributes travel in a request header that the context exposes.
    attributes = context.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes")
    return json.dumps({"predictions": prediction, "attributes": attributes}), "application/json"
