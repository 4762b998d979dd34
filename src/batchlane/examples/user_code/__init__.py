"""Example ``inference.py`` files (one folder each), used by the tests, the docs and anyone writing their own.

| example            | shows                                                                               |
|--------------------|-------------------------------------------------------------------------------------|
| ``with_context``   | all four hooks taking ``context`` (MMS/TorchServe style), transformers model_fn     |
| ``without_context``| classic SageMaker hooks without ``context``; JSON and CSV arrive as ``str``        |
| ``transform_fn``   | one ``transform_fn`` returning ``(body, content_type)``                             |
| ``predict_only``   | only ``predict_fn``: the default model_fn, input_fn and output_fn do the rest       |
| ``raises``         | a ``predict_fn`` that raises (the client gets a short 500)                          |
| ``slow_load``      | a ``model_fn`` that waits for a file named ``release`` in the model folder          |
| ``broken_model_fn``| a ``model_fn`` that raises (the server exits non-zero)                              |
| ``mixed``          | ``transform_fn`` together with ``predict_fn``: refused at start-up                  |
| ``bad_signature``  | a ``predict_fn`` with the wrong number of parameters: refused at start-up           |
| ``json_answers``   | classic hooks answering JSON to CSV requests (the default when Accept is unset)     |
| ``per_batch``      | one ``{"predictions": [...]}`` per mini-batch, not one result per record            |
"""

from __future__ import annotations

import shutil
from pathlib import Path

USER_CODE_DIR = Path(__file__).parent
EXAMPLES = tuple(
    sorted(p.name for p in USER_CODE_DIR.iterdir() if p.is_dir() and (p / "inference.py").is_file())
)


def example_path(name: str) -> Path:
    """The ``inference.py`` of example ``name``."""
    path = USER_CODE_DIR / name / "inference.py"
    if not path.is_file():
        raise ValueError(f"no example {name!r}; choose from {', '.join(EXAMPLES)}")
    return path


def make_model_dir(name: str, base_model_dir: str | Path, dest: str | Path) -> Path:
    """A model folder at ``dest``: links to ``base_model_dir``'s files plus ``code/inference.py`` of example ``name``."""
    base, out = Path(base_model_dir), Path(dest)
    (out / "code").mkdir(parents=True, exist_ok=True)
    for item in base.iterdir():
        if item.name != "code" and not (out / item.name).exists():
            (out / item.name).symlink_to(item.resolve())
    shutil.copyfile(example_path(name), out / "code" / "inference.py")
    return out
