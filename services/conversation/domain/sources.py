"""What the contact aggregate decides for: a gateway event (:class:`Source`) or a
closing after inactivity checked at a moment (:class:`Expiry`). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class Source(Protocol):
    """The gateway event a decision is made for: its id, time and actor.

    Commands satisfy it as they are, so the hot path allocates nothing extra.
    """

    @property
    def event_id(self) -> str: ...

    @property
    def occurred_at(self) -> datetime: ...

    @property
    def actor_type(self) -> str | None: ...

    @property
    def actor_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Expiry:
    """What decides a closing after inactivity: the moment it is checked at.

    ``event_id`` names what triggered the check (the contact's next gateway
    event, or a sweep), recorded as the closing's ``source_event_id``.
    """

    event_id: str
    occurred_at: datetime
    actor_type: str | None = None
    actor_id: str | None = None
