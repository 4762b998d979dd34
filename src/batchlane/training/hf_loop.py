"""The training loop: transformers' Trainer with dynamic padding, an optional class-weighted loss and progress logged
through ``logging``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from batchlane.training.encoding import PaddingCollator, pad_token_id

if TYPE_CHECKING:
    from batchlane.training.trainer import TrainRecipe

# The trainer's logger: its progress lines keep the name they have always had.
logger = logging.getLogger("batchlane.training.trainer")


def run_trainer(
    model: Any,
    tokenizer: Any,
    features: list[dict[str, Any]],
    weights: list[float] | None,
    recipe: TrainRecipe,
    precision: str,
    device: str,
    scratch: Path,
) -> float:
    """Train ``model`` on the encoded ``features`` with ``recipe``'s hyperparameters; returns the seconds it took."""
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    steps = int(np.ceil(len(features) / recipe.batch_size) * recipe.epochs)
    args = TrainingArguments(
        output_dir=str(scratch),
        per_device_train_batch_size=recipe.batch_size,
        num_train_epochs=recipe.epochs,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        warmup_steps=recipe.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type="linear",
        bf16=precision == "bf16",
        use_cpu=device == "cpu",
        # Batches of similar length (dynamic padding) cut the padded tokens roughly in half on long-tailed texts.
        train_sampling_strategy="group_by_length",
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_strategy="steps",
        logging_steps=max(1, steps // 20),
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        seed=recipe.seed,
        data_seed=recipe.seed,
    )
    trainer = _trainer_class(weights)(
        model=model,
        args=args,
        train_dataset=features,
        data_collator=PaddingCollator(pad_token_id(tokenizer)),
        callbacks=[_progress_callback(steps)],
    )
    trainer.remove_callback(PrinterCallback)  # it print()s raw dicts; the progress callback logs instead
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def _trainer_class(weights: list[float] | None) -> type:
    """transformers' Trainer, or a subclass whose loss is cross-entropy with per-label ``weights``."""
    from transformers import Trainer

    if weights is None:
        return Trainer

    import torch

    weight = torch.tensor(weights, dtype=torch.float32)

    class WeightedLossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            # fp32 loss: bf16 autocast logits are too coarse for a weighted log-softmax.
            loss = torch.nn.functional.cross_entropy(
                outputs.logits.float(), labels, weight=weight.to(outputs.logits.device)
            )
            return (loss, outputs) if return_outputs else loss

    return WeightedLossTrainer


def _progress_callback(steps: int) -> Any:
    """A TrainerCallback that logs step, loss and an ETA through ``logging`` (library code does not print)."""
    from transformers import TrainerCallback

    class LogProgress(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            elapsed = time.perf_counter() - self.started
            total = state.max_steps or steps
            eta = elapsed / max(state.global_step, 1) * (total - state.global_step)
            logger.info(
                "step %d/%d  loss %.4f  lr %.2e  %.0fs elapsed, ~%.0fs left",
                state.global_step,
                total,
                logs["loss"],
                logs.get("learning_rate", 0.0),
                elapsed,
                eta,
            )

    return LogProgress()
