"""Only ``predict_fn``: batchlane's default model_fn (a SequenceClassifier), input_fn and output_fn do the rest.

The default input_fn hands predict_fn the decoded body (see docs/serving.md): the JSON value, a list of JSON Lines
records, a list of CSV rows or a list of text lines.
"""

from batchlane.serving.classifier import payload_texts


def predict_fn(data, model):
    texts, _parameters = payload_texts(data)
    results = model.classify(texts)
    return [dict(result, chars=len(text)) for result, text in zip(results, texts, strict=True)]
