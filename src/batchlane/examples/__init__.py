"""Canonical examples shipped with the package: tiny models, an example ``inference.py``, sample requests.

Tests, docs and the demo use the same examples.
"""
