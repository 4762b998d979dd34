"""The demo dispute classifier: all-MiniLM-L6-v2 fine-tuned on the CFPB complaints shipped in ``examples/data/cfpb``.

:func:`ensure_demo_model` builds it on first use and caches it under ``<BATCHLANE_HOME>/models/<recipe-id>``; the id
hashes the recipe, the data files and the base model, so changing any of them builds a new model instead of reusing
a stale one. A lock file makes concurrent callers wait for one build rather than train twice. The recipe was chosen
by measurement to finish in well under 10 minutes on 2 CPU cores (see docs/training.md).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from batchlane.errors import Conflict, NotFound
from batchlane.settings import BATCHLANE_DEMO_DATA, home_dir
from batchlane.training.trainer import METRICS_FILE, TrainRecipe, default_base_model, train_classifier

logger = logging.getLogger(__name__)

DEMO_RECIPE = TrainRecipe(
    max_length=128,
    epochs=1.0,
    batch_size=16,
    learning_rate=2e-4,
    warmup_ratio=0.1,
    freeze_layers=2,
    max_train_rows=None,
    class_weighting="sqrt",
    head_init="probe",
    probe_rows=3000,
    dropout=0.0,
    seed=42,
    precision="auto",
)
DEMO_TRAIN_FILE = "train.csv.gz"
DEMO_TEST_FILE = "test.csv.gz"
DEFAULT_LOCK_TIMEOUT_S = 1800.0


def demo_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder holding the CFPB ``train.csv.gz``/``test.csv.gz``: ``$BATCHLANE_DEMO_DATA`` or the checkout's
    ``examples/data/cfpb``."""
    env = os.environ if env is None else env
    if env.get(BATCHLANE_DEMO_DATA):
        return Path(env[BATCHLANE_DEMO_DATA]).expanduser()
    # src/batchlane/training/demo_model.py -> the repository root is three levels above the package.
    return Path(__file__).resolve().parents[3] / "examples" / "data" / "cfpb"


def demo_recipe_id(data_dir: Path, base_model: Path, recipe: TrainRecipe = DEMO_RECIPE) -> str:
    """``cfpb-dispute-<hash>`` over the recipe, the data files' bytes and the base model's config and weight sizes."""
    digest = hashlib.sha256(recipe.digest().encode())
    for name in (DEMO_TRAIN_FILE, DEMO_TEST_FILE):
        digest.update(_file_sha256(data_dir / name).encode())
    for item in sorted(base_model.iterdir()):
        if item.is_file():
            digest.update(f"{item.name}:{item.stat().st_size}".encode())
    digest.update((base_model / "config.json").read_bytes())
    return f"cfpb-dispute-{digest.hexdigest()[:12]}"


def ensure_demo_model(
    *,
    env: Mapping[str, str] | None = None,
    data_dir: str | Path | None = None,
    base_model: str | Path | None = None,
    recipe: TrainRecipe = DEMO_RECIPE,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
) -> Path:
    """The directory of the demo dispute classifier, training it first if it is not cached yet.

    Trains on ``train.csv.gz`` and writes ``metrics.json`` for all of ``test.csv.gz`` (the 3,000 held-out rows).
    ``env`` (default ``os.environ``) supplies ``BATCHLANE_HOME`` and ``BATCHLANE_DEMO_DATA``. A second caller,
    in this or another process, waits up to ``lock_timeout`` seconds for a build in progress and then reuses it.
    """
    data = Path(data_dir).expanduser() if data_dir is not None else demo_data_dir(env)
    for name in (DEMO_TRAIN_FILE, DEMO_TEST_FILE):
        if not (data / name).is_file():
            raise NotFound(
                f"{data / name}: demo data not found; set {BATCHLANE_DEMO_DATA} to the folder with "
                f"{DEMO_TRAIN_FILE} and {DEMO_TEST_FILE}",
                field="data_dir",
            )
    base = Path(base_model).expanduser() if base_model is not None else default_base_model()
    if not (base / "config.json").is_file():
        raise NotFound(f"{base}: not a model directory (no config.json)", field="base_model")
    models = home_dir(env) / "models"
    target = models / demo_recipe_id(data, base, recipe)
    if _is_complete(target):
        return target
    models.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.with_name(target.name + ".lock"), lock_timeout):
        if _is_complete(target):  # built by whoever held the lock before us
            logger.info("demo model built meanwhile by another caller: %s", target)
            return target
        logger.info("building the demo model in %s (first use; a few minutes on CPU)", target)
        train_classifier(
            data / DEMO_TRAIN_FILE,
            target,
            base_model=base,
            eval_data=data / DEMO_TEST_FILE,
            recipe=recipe,
            overwrite=True,  # a directory without metrics.json is debris of an interrupted build
        )
    return target


def _is_complete(path: Path) -> bool:
    # The model directory is renamed into place whole, metrics.json included, so its presence means complete.
    return (path / METRICS_FILE).is_file() and (path / "config.json").is_file()


class _exclusive_lock:
    """An advisory ``flock`` on ``path``, polled until ``timeout`` (Conflict after that). Released on exit, and by the
    kernel if the holder dies, so a crashed build never blocks the next one."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.fd: int | None = None

    def __enter__(self) -> _exclusive_lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        waiting_logged = False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if not waiting_logged:
                logger.info("another build of the demo model is in progress; waiting for it (%s)", self.path)
                waiting_logged = True
            if time.monotonic() >= deadline:
                os.close(self.fd)
                self.fd = None
                raise Conflict(f"{self.path}: still locked by another build after {self.timeout:.0f}s")
            time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
