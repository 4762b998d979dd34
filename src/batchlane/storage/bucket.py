"""S3 bucket names: AWS's naming rules for general purpose buckets, checked once wherever a URI names a bucket.

The rules (S3 User Guide, "General purpose bucket naming rules"): 3-63 characters; only lowercase letters, digits,
dots and hyphens; a letter or digit first and last; no two adjacent dots; not an IP address (``192.168.5.4``); not
starting with ``xn--``, ``sthree-`` or ``amzn-s3-demo-``; not ending with ``-s3alias``, ``--ol-s3``, ``.mrap``,
``--x-s3`` or ``--table-s3`` (names AWS reserves for access point aliases and other bucket kinds). Legacy names
from before 2018 (uppercase, underscores) are refused too: S3 no longer creates them and virtual-hosted requests
cannot address them.
"""

from __future__ import annotations

import re

_CHARS = re.compile(r"[a-z0-9.-]+")
_IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid S3 bucket name (one line, naming it), or ``None`` when it is valid."""
    why = None
    if not 3 <= len(name) <= 63:
        why = f"must be 3-63 characters long, not {len(name)}"
    elif not _CHARS.fullmatch(name):
        why = "may hold only lowercase letters, digits, dots and hyphens"
    elif not (name[0].isalnum() and name[-1].isalnum()):
        why = "must start and end with a letter or digit"
    elif ".." in name:
        why = "must not hold two adjacent dots"
    elif _IP_ADDRESS.fullmatch(name):
        why = "must not be an IP address"
    elif name.startswith(RESERVED_PREFIXES):
        why = f"must not start with {', '.join(RESERVED_PREFIXES)}"
    elif name.endswith(RESERVED_SUFFIXES):
        why = f"must not end with {', '.join(RESERVED_SUFFIXES)}"
    return None if why is None else f"{name!r} is not a valid S3 bucket name: it {why}"
