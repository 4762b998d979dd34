"""`batchlane train`: labelled data loading, the fine-tuning recipe, metrics, evaluation and the cached demo model.

Importing this package is cheap; torch and transformers are imported by the functions that need them.
"""

from batchlane.training.data import LabelledData, load_labelled
from batchlane.training.demo_model import DEMO_RECIPE, ensure_demo_model
from batchlane.training.evaluate import evaluate_model
from batchlane.training.metrics import classification_report
from batchlane.training.trainer import TrainRecipe, TrainResult, default_base_model, train_classifier

__all__ = [
    "DEMO_RECIPE",
    "LabelledData",
    "TrainRecipe",
    "TrainResult",
    "classification_report",
    "default_base_model",
    "ensure_demo_model",
    "evaluate_model",
    "load_labelled",
    "train_classifier",
]
