"""What differs between an existing resource's spec and a new request for the same name: the one-line reasons of
the ``Conflict`` raised when a create repeats a name with another spec (models, transform jobs, SageMaker ones)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any


def differences(
    old: Mapping[str, Any], new: Mapping[str, Any], *, keys_only: Collection[str] = (), path: str = ""
) -> list[str]:
    """The fields of ``new`` whose value differs in ``old``, each as ``"path (old → new)"``.

    Fields only in ``old`` (defaults a service adds) are not differences. Mappings on both sides are compared field
    by field with dotted paths. A field named in ``keys_only`` (values that may be long or secret, such as an
    environment) is reported by the keys that differ only: ``"environment (keys A, B)"``.
    """
    found: list[str] = []
    for key, value in new.items():
        other = old.get(key)
        if key in keys_only:
            if (other or {}) != (value or {}):
                before, after = other or {}, value or {}
                changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
                found.append(f"{path}{key} (keys {', '.join(changed)})")
        elif isinstance(value, Mapping) and isinstance(other, Mapping):
            found += differences(other, value, keys_only=keys_only, path=f"{path}{key}.")
        elif value != other:
            found.append(f"{path}{key} ({other!r} → {value!r})")
    return found
