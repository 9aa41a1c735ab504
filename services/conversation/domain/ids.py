"""Stable ids of the contact aggregate and of what it names (events, conversations).

Every id is a UUID version 5 under the aggregate's own id, so the same history
gives the same ids on every runtime and every replay. Standard library only.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from functools import lru_cache
from importlib import import_module
from typing import Any, Final

try:  # CPython's own SHA-1 (hashlib's fallback): no OpenSSL digest is fetched per call
    _sha1: Callable[[bytes], Any] = import_module("_sha1").sha1
except ImportError:  # pragma: no cover (a CPython built without its builtin hashes)
    _sha1 = hashlib.sha1

NAMESPACE: Final = uuid.UUID("6f0c7a52-2b5e-4f55-9a57-8d6cbb0b6b11")
_NAMESPACE_BYTES: Final = NAMESPACE.bytes
#: the bits ``uuid.UUID(..., version=5)`` clears and sets in the 128-bit value
_VERSION_MASK: Final = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_5: Final = (0x5000 << 64) | (0x8000 << 48)
_new_uuid = object.__new__
_set = object.__setattr__
_UNKNOWN: Final = uuid.SafeUUID.unknown


@lru_cache(maxsize=1 << 18)
def aggregate_id(workspace_id: str, contact_id: str) -> uuid.UUID:
    """Stable id of a contact's aggregate (also the event store's originator id):
    ``uuid.uuid5(NAMESPACE, f"{workspace_id}\\x1f{contact_id}")``, built as
    ``uuid.UUID.__init__`` builds it from its value, without its checks of
    arguments it is not given (once per contact the service meets)."""
    digest = _sha1(_NAMESPACE_BYTES + f"{workspace_id}\x1f{contact_id}".encode()).digest()
    value = (int.from_bytes(digest[:16], "big") & _VERSION_MASK) | _VERSION_5
    ident = _new_uuid(uuid.UUID)
    _set(ident, "int", value)
    _set(ident, "is_safe", _UNKNOWN)
    return ident


def name_uuid(namespace: uuid.UUID | bytes, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))`` without building UUID objects (hot path).

    ``namespace`` may be given as its 16 bytes, which saves converting it each time.
    """
    prefix = namespace if isinstance(namespace, bytes) else namespace.bytes
    h = _sha1(prefix + name.encode()).hexdigest()
    # version 5 in the 13th hex digit, RFC 4122 variant in the 17th
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT: Final = {d: "89ab"[int(d, 16) & 0x3] for d in "0123456789abcdef"}
