"""The engine seam: ``get_engine`` and its errors, and the rule that no module outside ``engines/`` imports a
concrete engine (checked by reading every module's imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import batchlane
from batchlane.engines import ENGINE_NAMES, Engine, get_engine
from batchlane.errors import ValidationError
from batchlane.jobs.naming import MAX_JOB_NAME, attempt_name, timestamped_name
from batchlane.jobs.state import check_job_name
from batchlane.jobs.store import JobStore

PACKAGE = Path(batchlane.__file__).parent
ENGINES = PACKAGE / "engines"
# engines/ modules every front door may import: the seam itself and the engine-neutral lifecycle parts.
NEUTRAL = {"__init__", "base", "submit", "request"}
CONCRETE = {path.stem for path in ENGINES.glob("*.py")} - NEUTRAL


def concrete_engine_imports(source: str) -> list[str]:
    """``batchlane.engines.<engine>`` modules that ``source`` imports (statically), engine-neutral ones aside."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[:2] == ["batchlane", "engines"] and len(parts) > 2 and parts[2] in CONCRETE:
                found.append(module)
    return found


def test_the_rule_sees_every_way_of_importing_a_concrete_engine() -> None:
    assert {"local"} <= CONCRETE
    assert concrete_engine_imports("from batchlane.engines import local") == ["batchlane.engines.local"]
    assert concrete_engine_imports("def f():\n    import batchlane.engines.local as x\n")
    assert concrete_engine_imports("from batchlane.engines.local import LocalEngine")
    assert concrete_engine_imports("from batchlane.engines import get_engine, Engine") == []


def test_no_module_outside_engines_imports_a_concrete_engine() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): imports
        for path in sorted(PACKAGE.rglob("*.py"))
        if ENGINES not in path.parents
        and (imports := concrete_engine_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "use batchlane.engines.get_engine(name, store) instead"


def test_get_engine_gives_the_local_engine(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    engine = get_engine("local", store)
    assert isinstance(engine, Engine)
    assert engine.name == "local" and engine.store is store


def test_get_engine_gives_the_sagemaker_engine(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    engine = get_engine("sagemaker", store, region="eu-west-1")
    assert isinstance(engine, Engine)
    assert engine.name == "sagemaker" and engine.store is store


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("spark", "engine 'spark' is not one of local, ray, sagemaker"),
        ("Local", "engine 'Local' is not one of"),
        (
            "docker",
            "'docker' is not an engine: a model whose Image is a container image runs in Docker on any",
        ),
    ],
)
def test_get_engine_says_what_is_missing(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        get_engine(name, JobStore(tmp_path / "jobs.db"))
    assert expected in str(caught.value) and caught.value.field == "engine"


def test_get_engine_names_the_extra_an_engine_needs(tmp_path: Path) -> None:
    """Without the ray package (hidden from this child interpreter by a meta-path finder), asking for the ray engine
    names the extra to install."""
    import subprocess
    import sys

    code = f"""
import sys
class _NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, _NoRay())
import importlib.util
def find_spec(name, package=None, _real=importlib.util.find_spec):
    return None if name == "ray" else _real(name, package)
importlib.util.find_spec = find_spec
from batchlane.engines import get_engine
from batchlane.errors import ValidationError
from batchlane.jobs.store import JobStore
try:
    get_engine("ray", JobStore({str(tmp_path / "jobs.db")!r}))
except ValidationError as exc:
    print(exc.field, exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "engine engine 'ray' needs the 'ray' extra: pip install 'batchlane[ray]'" in out.stdout, out.stderr
    assert "ray" in ENGINE_NAMES


def test_a_worker_refuses_an_unknown_engine_naming_the_choices(tmp_path: Path) -> None:
    from batchlane.queue.sqlite import SqliteQueue
    from batchlane.queue.worker import Worker

    queue = SqliteQueue(tmp_path / "queue.db", "jobs")
    with pytest.raises(ValidationError, match="engine 'spark' is not one of local, ray"):
        Worker(queue, JobStore(tmp_path / "jobs.db"), engine="spark")  # type: ignore[arg-type]


def test_get_engine_gives_the_ray_engine_where_the_extra_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    store = JobStore(tmp_path / "jobs.db")
    engine = get_engine("ray", store, address="auto", replicas=2)
    assert isinstance(engine, Engine) and engine.name == "ray" and engine.store is store


@pytest.mark.parametrize("base", ["batchlane", "demo", "x" * 80, "a-" * 40])
def test_generated_job_names_are_sagemaker_names(base: str) -> None:
    name = timestamped_name(base)
    assert len(name) <= MAX_JOB_NAME and check_job_name(name) == name
    again = attempt_name(name, 12)
    assert again.endswith("-r12") and len(again) <= MAX_JOB_NAME and check_job_name(again) == again
    assert attempt_name(name, 0) == name
