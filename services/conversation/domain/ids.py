"""Stable ids of the contact aggregate and of what it names (events, conversations).

Every id is a UUID version 5 under the aggregate's own id, so the same history
gives the same ids on every runtime and every replay. Standard library only.
"""

from __future__ import annotations

import hashlib
import uuid
from functools import lru_cache
from typing import Final

NAMESPACE: Final = uuid.UUID("6f0c7a52-2b5e-4f55-9a57-8d6cbb0b6b11")


@lru_cache(maxsize=1 << 18)
def aggregate_id(workspace_id: str, contact_id: str) -> uuid.UUID:
    """Stable id of a contact's aggregate (also the event store's originator id)."""
    return uuid.uuid5(NAMESPACE, f"{workspace_id}\x1f{contact_id}")


def name_uuid(namespace: uuid.UUID | bytes, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))`` without building UUID objects (hot path).

    ``namespace`` may be given as its 16 bytes, which saves converting it each time.
    """
    prefix = namespace if isinstance(namespace, bytes) else namespace.bytes
    h = hashlib.sha1(prefix + name.encode()).hexdigest()
    # version 5 in the 13th hex digit, RFC 4122 variant in the 17th
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT: Final = {d: "89ab"[int(d, 16) & 0x3] for d in "0123456789abcdef"}
