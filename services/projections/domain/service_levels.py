"""The business-hours clock of a workspace's settings (CONTRACT §6.3), for the read side."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import orjson

from schemas.workspace import WorkspaceSettings
from services.projections.domain.business_hours import business_calendar
from services.projections.domain.rows import BusinessClock


@dataclass(frozen=True, slots=True)
class Schedule:
    """A workspace's business hours as the metrics use them: ``micros(start_us, end_us)``
    (0 when ``end <= start``) and a ``key`` naming the schedule and its zone, under
    which business durations may be cached."""

    key: str
    micros: Callable[[int, int], int]

    def clock(self, start_us: int, end_us: int) -> float:
        return self.micros(start_us, end_us) / 1_000_000


def schedule_of(settings: WorkspaceSettings) -> Schedule | None:
    """The schedule in force (None: always open)."""
    if settings.business_hours is None:
        return None
    intervals = tuple(settings.business_hours)
    calendar = business_calendar(intervals, ZoneInfo(settings.timezone))
    text = orjson.dumps([settings.timezone, [i.model_dump(mode="json") for i in intervals]],
                        option=orjson.OPT_SORT_KEYS)
    return Schedule(hashlib.sha256(text).hexdigest()[:32], calendar.micros)


def business_clock(settings: WorkspaceSettings) -> BusinessClock | None:
    """``(start_us, end_us) -> seconds`` inside the schedule in force; None: no schedule."""
    schedule = schedule_of(settings)
    return None if schedule is None else schedule.clock
