"""What the read model tells listeners after each projected batch (PostgreSQL ``NOTIFY``).

The PostgreSQL read model sends ``NOTIFY bonychat_projected, 'ws1,ws2'`` in the
transaction that saves a batch's rows, so listeners (the dashboard's live
stream) hear of it exactly when the rows become visible. Long lists become ``*``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

PROJECTED_CHANNEL: Final = "bonychat_projected"
ALL: Final = "*"
_MAX_PAYLOAD: Final = 7_000  # PostgreSQL refuses payloads of 8,000 bytes or more


def notify_payload(workspaces: Collection[str]) -> str:
    """The payload naming ``workspaces``: comma-separated, or ``*`` when too long."""
    text = ",".join(sorted(set(workspaces)))
    return text if 0 < len(text.encode()) < _MAX_PAYLOAD else ALL


def parse_payload(payload: str) -> list[str] | None:
    """Workspaces named by a payload (``None`` = all of them)."""
    if not payload or payload == ALL:
        return None
    return [w for w in payload.split(",") if w]
