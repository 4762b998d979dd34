"""The pure parts of ``code/requirements.txt`` handling: pip's reason in one line, cache keys, pins, the setting."""

from __future__ import annotations

import importlib.metadata

import pytest

from batchlane.errors import ValidationError
from batchlane.serving.requirements import cache_key, pinned_distributions, summarize_pip_output
from batchlane.settings import ServeSettings

NOT_FOUND = """\
Looking in links: /tmp/wheels
ERROR: Could not find a version that satisfies the requirement nosuch==1.0 (from versions: none)
ERROR: No matching distribution found for nosuch==1.0
"""
CONFLICT = """\
Looking in links: /tmp/wheels
ERROR: Cannot install numpy==1.0 because these package versions have conflicting dependencies.

The conflict is caused by:
    The user requested numpy==1.0
    The user requested (constraint) numpy==2.4.6

To fix this you could try to:
1. loosen the range of package versions you've specified
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
"""


@pytest.mark.parametrize(
    ("output", "summary"),
    [
        (NOT_FOUND, "No matching distribution found for nosuch==1.0"),
        (
            CONFLICT,
            "Cannot install numpy==1.0 because these package versions have conflicting dependencies: "
            "The user requested numpy==1.0; The user requested (constraint) numpy==2.4.6; "
            "batchlane keeps the packages of its own environment at their installed versions",
        ),
        ("/cache/bin/python: No module named pip\n", "/cache/bin/python: No module named pip"),
        ("", "pip printed nothing"),
    ],
    ids=["not-found", "conflict-with-a-pin", "no-error-line", "silent"],
)
def test_pip_output_becomes_one_line(output: str, summary: str) -> None:
    assert summarize_pip_output(output) == summary


def test_the_cache_key_follows_the_file_and_the_environment() -> None:
    key = cache_key(b"pandas\n", "numpy==2.0\n")
    assert key == cache_key(b"pandas\n", "numpy==2.0\n")
    file_part, env_part = key.split("-")
    other_file = cache_key(b"pandas==2.2\n", "numpy==2.0\n").split("-")
    other_env = cache_key(b"pandas\n", "numpy==2.1\n").split("-")
    assert other_file[0] != file_part and other_file[1] == env_part
    assert other_env[0] == file_part and other_env[1] != env_part


def test_every_installed_distribution_is_pinned_at_its_version() -> None:
    pins = pinned_distributions()
    assert f"numpy=={importlib.metadata.version('numpy')}" in pins
    assert f"pydantic=={importlib.metadata.version('pydantic')}" in pins
    assert len(pins) == len({pin.split("==")[0] for pin in pins})


@pytest.mark.parametrize(
    ("env", "flag", "expected"),
    [
        ({}, None, True),
        ({"BATCHLANE_INSTALL_REQUIREMENTS": "false"}, None, False),
        ({"BATCHLANE_INSTALL_REQUIREMENTS": " OFF "}, None, False),
        ({"BATCHLANE_INSTALL_REQUIREMENTS": "1"}, None, True),
        ({}, False, False),  # --no-install-requirements
        (
            {"BATCHLANE_INSTALL_REQUIREMENTS": "no"},
            True,
            True,
        ),  # --install-requirements wins over the variable
    ],
)
def test_install_requirements_setting(env: dict[str, str], flag: bool | None, expected: bool) -> None:
    settings = ServeSettings.from_env({"BATCHLANE_HOME": "/h", **env}, install_requirements=flag)
    assert settings.install_requirements is expected
    assert str(settings.requirements_cache) == "/h/requirements"


def test_a_bad_install_requirements_value_names_the_variable() -> None:
    with pytest.raises(
        ValidationError, match="BATCHLANE_INSTALL_REQUIREMENTS must be true or false, got 'maybe'"
    ):
        ServeSettings.from_env({"BATCHLANE_INSTALL_REQUIREMENTS": "maybe"})
