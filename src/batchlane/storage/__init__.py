"""Object stores behind one Protocol: a local folder (plain path or ``file://``) and ``s3://`` on any endpoint.

``open_store(uri)`` picks the store by scheme and returns it with the key inside it; see ``storage.uri``.
"""

from batchlane.storage.base import ObjectInfo, ObjectStore, join_key, stat
from batchlane.storage.local import LocalStore
from batchlane.storage.s3 import S3Store, make_s3_client
from batchlane.storage.uri import ParsedUri, open_store, parse_uri, register_scheme

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "ParsedUri",
    "S3Store",
    "join_key",
    "make_s3_client",
    "open_store",
    "parse_uri",
    "register_scheme",
    "stat",
]
