"""Local dates of instants in an IANA zone, from the zone's offset table.

``(instant + offset) // day`` with the offset in force (:mod:`.zone_offsets`, built
from ``zoneinfo`` itself) is exactly ``astimezone(zone).date()``, without a
``datetime`` per instant: the metric cells (:mod:`.cell_metrics`) name thousands of
slots per query, and the page data (:mod:`.pages_postgres`) cut days into hours.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

from services.projections.domain.metrics import to_us
from services.projections.domain.zone_offsets import ZoneOffsets

DAY_US: Final = 86_400_000_000
SAFE_LOW_US: Final = to_us(datetime(1900, 1, 1, tzinfo=UTC))
SAFE_HIGH_US: Final = to_us(datetime(2150, 1, 1, tzinfo=UTC))
EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


class NotExact(Exception):
    """The fast path cannot give the reference's answer for sure: compute in Python."""


@lru_cache(maxsize=64)
def zone_offsets(tz: str) -> ZoneOffsets:
    return ZoneOffsets(ZoneInfo(tz))


class LocalDays:
    """Local date numbers (days since 1970-01-01) of instants in one zone."""

    def __init__(self, tz: str, low_us: int, high_us: int) -> None:
        self.offsets_of = zone_offsets(tz)
        self._cover(low_us, high_us)

    def _cover(self, low_us: int, high_us: int) -> None:
        self.low, self.high, self.changes, self.offsets = self.offsets_of.table(low_us, high_us)

    def offset(self, micros: int) -> int:
        """The zone's offset (microseconds east of UTC) in force at ``micros``."""
        if not self.low <= micros <= self.high:
            self._cover(min(micros, self.low), max(micros, self.high))
        return self.offsets[bisect_right(self.changes, micros)]

    def day(self, micros: int) -> int:
        if not self.low <= micros <= self.high:
            self._cover(min(micros, self.low), max(micros, self.high))
        return (micros + self.offsets[bisect_right(self.changes, micros)]) // DAY_US

    def start(self, day: int) -> int:
        """The first instant whose local date is ``day`` or later (dates are checked to
        never go back near it, :meth:`check_monotone`)."""
        midnight = day * DAY_US  # local midnight as if UTC: shift by the offset there
        guess = midnight - self.offset(midnight - self.offset(midnight))
        if self.day(guess) >= day > self.day(guess - 1):
            return guess
        low, high = midnight - 2 * DAY_US, midnight + 2 * DAY_US
        while low < high:
            middle = (low + high) // 2
            if self.day(middle) >= day:
                high = middle
            else:
                low = middle + 1
        return low

    def check_monotone(self, low_us: int, high_us: int) -> None:
        """Local dates never go back between the two instants (else :class:`NotExact`)."""
        self.day(low_us)
        self.day(high_us)
        first = bisect_right(self.changes, low_us)
        for change in self.changes[first:bisect_right(self.changes, high_us)]:
            if self.day(change) < self.day(change - 1):
                raise NotExact("the local date goes back at an offset change")

    def slot_day(self, slot: int, size: int) -> int | None:
        """The local date of every instant of ``[slot, slot + size)``, None if several."""
        first = self.day(slot)
        if self.day(slot + size - 1) != first:  # (also covers the slot's offsets)
            return None
        inside = self.changes[bisect_right(self.changes, slot):
                              bisect_right(self.changes, slot + size - 1)]
        if any(self.day(c) != first or self.day(c - 1) != first for c in inside):
            return None
        return first


def day_number(day: date) -> int:
    return day.toordinal() - EPOCH_ORDINAL


def safe_day(day: date | None) -> int | None:
    """The day's number, or :class:`NotExact` outside 1900..2150."""
    if day is None:
        return None
    if not date(1900, 1, 3) <= day <= date(2149, 12, 29):
        raise NotExact(f"{day} is outside 1900..2150")
    return day_number(day)
