"""The business-hours clock of a workspace's settings (CONTRACT §6.3), for the read side."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from schemas.workspace import WorkspaceSettings
from services.projections.domain.business_hours import business_calendar
from services.projections.domain.rows import BusinessClock


def business_clock(settings: WorkspaceSettings) -> BusinessClock | None:
    """``(start_us, end_us) -> seconds`` inside the schedule in force; None: no schedule."""
    if settings.business_hours is None:
        return None
    calendar = business_calendar(tuple(settings.business_hours), ZoneInfo(settings.timezone))

    def clock(start_us: int, end_us: int) -> float:
        return calendar.micros(start_us, end_us) / 1_000_000

    return clock
