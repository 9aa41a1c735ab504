"""Business-hours durations of CONTRACT §6.3: exact, DST-correct interval arithmetic.

The business part of a real interval ``[start, end)`` is the set of its instants whose
local wall-clock time in ``tz`` (weekday and time of day) falls inside the weekly
schedule. That one rule settles every DST question:

- a day that loses an hour (spring forward) loses it from whatever interval covers
  the skipped local times: ``00:00-24:00`` is then 23 real hours; a boundary at a
  skipped time (``02:30`` in Berlin on the last Sunday of March) starts or ends at the
  change instant (03:00 local);
- a day that repeats an hour (fall back) counts the repeated local times twice:
  ``00:00-24:00`` is 25 real hours, and an interval ``02:30-...`` on that day holds
  02:30-03:00 of both passes (not 02:00-02:30 of the second pass);
- a ``09:00-18:00`` day that contains no change is 9 real hours, as always.

How: between two offset changes of the zone the local time is the UTC instant plus
a constant offset, so the business part of such a piece is the schedule's measure
over the shifted (naive local) interval: ``F(local_end) - F(local_start)``, where
``F(t)`` is the schedule's measure from a Monday 00:00 to ``t``: whole weeks times the
weekly total plus a bisection within the week. The cost is O(1 + offset changes
inside the interval, ~2 a year), exact to the microsecond; no sampling.

Use :func:`business_seconds` for one interval, or :func:`business_calendar` once per
(schedule, zone) and its :meth:`BusinessCalendar.micros` for many (metrics).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Final
from zoneinfo import ZoneInfo

from schemas.workspace import BusinessInterval
from services.projections.domain.zone_offsets import US, Table, ZoneOffsets

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
_DAY_US: Final = 86_400 * US
_WEEK_US: Final = 7 * _DAY_US
_THURSDAY: Final = 3 * _DAY_US  # 1970-01-01 was a Thursday: shift the epoch to a Monday


class WeeklySchedule:
    """A schedule as sorted, merged intervals of the week (microseconds from Monday 00:00)."""

    __slots__ = ("cumulative", "ends", "starts", "week_us")

    def __init__(self, schedule: Sequence[BusinessInterval]) -> None:
        pieces = sorted(
            (interval.day_index * _DAY_US + interval.start_minute * 60 * US,
             interval.day_index * _DAY_US + interval.end_minute * 60 * US)
            for interval in schedule)
        merged: list[list[int]] = []
        for start, end in pieces:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = [start for start, _ in merged]
        self.ends = [end for _, end in merged]
        self.cumulative: list[int] = []
        total = 0
        for start, end in merged:
            self.cumulative.append(total)
            total += end - start
        self.week_us = total

    def between(self, local_start_us: int, local_end_us: int) -> int:
        """Business microseconds of the naive local interval ``[local_start, local_end)``."""
        # the measure from Monday 00:00 to each end, inline: the hot path of metrics queries
        starts, ends, cumulative = self.starts, self.ends, self.cumulative
        start_week, start = divmod(local_start_us + _THURSDAY, _WEEK_US)
        end_week, end = divmod(local_end_us + _THURSDAY, _WEEK_US)
        total = (end_week - start_week) * self.week_us
        index = bisect_right(starts, end) - 1
        if index >= 0:
            total += cumulative[index] + min(end, ends[index]) - starts[index]
        index = bisect_right(starts, start) - 1
        if index >= 0:
            total -= cumulative[index] + min(start, ends[index]) - starts[index]
        return total


class BusinessCalendar:
    """A weekly schedule in one zone, ready to measure many intervals."""

    __slots__ = ("_table", "_week", "_zone", "tz")

    def __init__(self, schedule: Sequence[BusinessInterval] | None, tz: ZoneInfo) -> None:
        self.tz = tz
        self._week = WeeklySchedule(schedule) if schedule is not None else None
        self._zone = _zone_offsets(tz)
        self._table: Table = (0, -1, [], [])  # covers nothing: the first call fills it

    def seconds(self, start: datetime, end: datetime) -> float:
        """Business seconds of ``[start, end)`` (aware datetimes); 0 when ``end <= start``."""
        return self.micros((start - _EPOCH) // _ONE_US, (end - _EPOCH) // _ONE_US) / US

    def micros(self, start_us: int, end_us: int) -> int:
        """Business microseconds of ``[start_us, end_us)``, instants in microseconds
        since the epoch (UTC); 0 when ``end_us <= start_us``."""
        if end_us <= start_us:
            return 0
        week = self._week
        if week is None:
            return end_us - start_us
        table = self._table
        if start_us < table[0] or end_us > table[1]:
            table = self._table = self._zone.table(start_us, end_us)
        changes, offsets = table[2], table[3]
        index = bisect_right(changes, start_us)
        if index == len(changes) or changes[index] >= end_us:  # the common case: one offset
            offset = offsets[index]
            return week.between(start_us + offset, end_us + offset)
        total = 0
        piece_start = start_us
        while index < len(changes) and changes[index] < end_us:
            offset = offsets[index]
            total += week.between(piece_start + offset, changes[index] + offset)
            piece_start = changes[index]
            index += 1
        offset = offsets[index]
        return total + week.between(piece_start + offset, end_us + offset)


@cache
def _zone_offsets(tz: ZoneInfo) -> ZoneOffsets:
    return ZoneOffsets(tz)


@lru_cache(maxsize=256)
def business_calendar(
        schedule: tuple[BusinessInterval, ...] | None, tz: ZoneInfo) -> BusinessCalendar:
    """The (cached) calendar of ``schedule`` in ``tz``."""
    return BusinessCalendar(schedule, tz)


_recent: tuple[object, ZoneInfo, BusinessCalendar] | None = None


def business_seconds(
        start: datetime, end: datetime, schedule: Sequence[BusinessInterval] | None,
        tz: ZoneInfo) -> float:
    """Seconds of ``[start, end)`` inside the weekly ``schedule`` written in the local
    time of ``tz``, DST-correct (see the module docstring); the calendar duration when
    ``schedule`` is None; 0 when ``end <= start``. ``start`` and ``end`` must be aware."""
    if schedule is None:  # subtract via UTC: same-tzinfo subtraction is wall-clock time
        return max(0, (end - _EPOCH) // _ONE_US - (start - _EPOCH) // _ONE_US) / US
    global _recent  # noqa: PLW0603 - a one-entry identity cache: the common caller
    recent = _recent  # passes the same (immutable) schedule object many times in a row
    if recent is not None and recent[0] is schedule and recent[1] is tz:
        calendar = recent[2]
    else:
        calendar = business_calendar(tuple(schedule), tz)
        if type(schedule) is tuple:  # a list could change in place under the cache
            _recent = (schedule, tz, calendar)
    return calendar.seconds(start, end)
