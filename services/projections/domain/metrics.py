"""Metrics of CONTRACT §3 and §6.6, computed at query time from conversation facts.

One implementation serves the CLI, the HTTP API and exports, on either store.
Business-hours durations use the schedule given with the query (the one in
force now), through a :data:`~.rows.BusinessClock`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.projections.domain.durations import duration_stats
from services.projections.domain.rows import BusinessClock

GroupBy = Literal["day", "week", "month", "channel", "opened_by", "closed_by", "assignee", "team"]
GROUPINGS: Final[tuple[str, ...]] = (
    "day", "week", "month", "channel", "opened_by", "closed_by", "assignee", "team")
TIME_GROUPINGS: Final = frozenset({"day", "week", "month"})
OPENED_COUNTED: Final = frozenset({"day", "week", "month", "channel", "opened_by"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Fact:
    """What the metrics need of one conversation."""

    opened_us: int
    closed_us: int | None
    channel: str | None
    opened_by: str
    closed_by: str | None
    assignee_id: str | None
    team_id: str | None
    first_message_us: int | None = None
    first_response_us: int | None = None
    recontact: bool = False


@dataclass(frozen=True, slots=True)
class MetricsQuery:
    workspace_id: str
    group_by: str = "day"
    tz: str = "UTC"
    date_from: date | None = None
    date_to: date | None = None


def calendar_date(text: str) -> date:
    """A ``YYYY-MM-DD`` date as ``--from``/``--to`` take it; ValueError says what is wrong."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(f"{text!r} is not a date (expected YYYY-MM-DD)")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid calendar date") from None


def time_zone(text: str) -> str:
    """An IANA time zone name, checked; ValueError says what is wrong."""
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {text!r} (use an IANA name such as "
                         "Europe/Berlin)") from None
    return text


@dataclass(slots=True)
class _Bucket:
    opened: int = 0
    closed: int = 0
    recontacts: int = 0
    resolutions: list[float] = field(default_factory=list)
    resolutions_business: list[float] = field(default_factory=list)
    responses: list[float] = field(default_factory=list)
    responses_business: list[float] = field(default_factory=list)

    def row(self, key: str | None, opened_null: bool = False) -> dict[str, Any]:
        return {
            "key": key, "opened": None if opened_null else self.opened, "closed": self.closed,
            "resolution_seconds": duration_stats(self.resolutions),
            "first_response_seconds": duration_stats(self.responses),
            "first_response_business_seconds": duration_stats(self.responses_business),
            "resolution_business_seconds": duration_stats(self.resolutions_business),
            "recontacts": None if opened_null else self.recontacts,
        }


#: closings that do not count in resolution statistics (CONTRACT §3, §6.4)
UNRESOLVED: Final = frozenset({"merge", "inactivity"})


def _within(day: date, low: date | None, high: date | None) -> bool:
    return (low is None or day >= low) and (high is None or day <= high)


def _business(start_us: int, end_us: int, business: BusinessClock | None) -> float:
    calendar = max(0, end_us - start_us) / 1_000_000
    if business is None or end_us <= start_us:
        return calendar
    return business(start_us, end_us)


class _LocalDates:
    """Epoch microseconds -> calendar date in a zone, memoised per UTC hour.

    An hour is memoised only when its offset is constant and it maps to one
    local date; hours with a midnight or a DST change inside are computed exactly.
    """

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._hours: dict[int, date | None] = {}

    def exact(self, micros: int) -> date:
        moment = _EPOCH + timedelta(microseconds=micros)
        try:
            return moment.astimezone(self.zone).date()
        except OverflowError:  # the local date is before year 1 or after 9999: clamp
            return date.min if moment.year == 1 else date.max

    def __call__(self, micros: int) -> date:
        hour = micros // 3_600_000_000
        if hour in self._hours:
            hit = self._hours[hour]
            return hit if hit is not None else self.exact(micros)
        try:
            start = (_EPOCH + timedelta(hours=hour)).astimezone(self.zone)
            end = (_EPOCH + timedelta(hours=hour + 1, microseconds=-1)).astimezone(self.zone)
        except OverflowError:
            self._hours[hour] = None
            return self.exact(micros)
        same = start.utcoffset() == end.utcoffset() and start.date() == end.date()
        self._hours[hour] = start.date() if same else None
        return start.date() if same else self.exact(micros)


def to_us(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


#: (low, high) epoch microseconds: facts with a moment (opened, closed, first
#: response) in ``[low, high)``; what a store may filter on before :func:`compute`
FactWindow = tuple[int, int]
_WINDOW_PAD: Final = timedelta(days=2)  # any zone's local date is within a day of UTC's
_US_MIN: Final = -(2**63) + 1
_US_MAX: Final = 2**63 - 1


def fact_window(query: MetricsQuery) -> FactWindow | None:
    """A UTC interval holding every moment whose local date is in ``from``..``to``.

    Generous (two days on each side): :func:`compute` still decides exactly, the
    window only spares reading facts that cannot count. None without a range.
    """
    if query.date_from is None and query.date_to is None:
        return None
    low, high = _US_MIN, _US_MAX
    try:
        if query.date_from is not None:
            start = datetime(query.date_from.year, query.date_from.month, query.date_from.day,
                             tzinfo=UTC)
            low = to_us(start - _WINDOW_PAD)
    except OverflowError:
        low = _US_MIN
    try:
        if query.date_to is not None:
            end = datetime(query.date_to.year, query.date_to.month, query.date_to.day,
                           tzinfo=UTC) + timedelta(days=1)
            high = to_us(end + _WINDOW_PAD)
    except OverflowError:
        high = _US_MAX
    return low, high


#: (column, low, high): rows whose ``opened_us`` or ``closed_us`` is in [low, high)
RowWindow = tuple[Literal["opened_us", "closed_us"], int, int]


def in_window(fact: Fact, window: FactWindow) -> bool:
    """Whether one of the fact's moments falls in ``window`` (what stores select)."""
    low, high = window
    return any(moment is not None and low <= moment < high
               for moment in (fact.opened_us, fact.closed_us, fact.first_response_us))


def time_key(day: date, group_by: str) -> str:
    if group_by == "day":
        return day.isoformat()
    if group_by == "week":
        year, week, _ = day.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return f"{day.year:04d}-{day.month:02d}"


def _dimension(fact: Fact, group_by: str) -> str:
    if group_by == "channel":
        return fact.channel or "none"
    if group_by == "opened_by":
        return fact.opened_by
    if group_by == "closed_by":
        return fact.closed_by or "none"
    if group_by == "assignee":
        return fact.assignee_id or "unassigned"
    return fact.team_id or "unassigned"


def compute(query: MetricsQuery, facts: Iterable[Fact],
            business: BusinessClock | None = None) -> dict[str, Any]:
    """The metrics JSON of CONTRACT §3 and §6.6 for one workspace.

    ``business``: the workspace's business-hours clock (None: always open).
    """
    group_by = query.group_by
    local = _LocalDates(ZoneInfo(query.tz))
    low, high = query.date_from, query.date_to
    by_time = group_by in TIME_GROUPINGS
    buckets: dict[str, _Bucket] = {}
    total = _Bucket()
    for fact in facts:
        opened_day = local(fact.opened_us)
        if _within(opened_day, low, high):
            total.opened += 1
            total.recontacts += fact.recontact
            if group_by in OPENED_COUNTED:
                key = time_key(opened_day, group_by) if by_time else _dimension(fact, group_by)
                bucket = buckets.setdefault(key, _Bucket())
                bucket.opened += 1
                bucket.recontacts += fact.recontact
        responded, first = fact.first_response_us, fact.first_message_us
        if responded is not None and first is not None:
            responded_day = local(responded)
            if _within(responded_day, low, high):
                calendar = max(0, responded - first) / 1_000_000
                inside = _business(first, responded, business)
                targets = [total]  # the total covers the range whatever the grouping
                if group_by != "closed_by" or fact.closed_us is not None:
                    key = (time_key(responded_day, group_by) if by_time
                           else _dimension(fact, group_by))
                    targets.append(buckets.setdefault(key, _Bucket()))
                for target in targets:
                    target.responses.append(calendar)
                    target.responses_business.append(inside)
        if fact.closed_us is None:
            continue
        closed_day = local(fact.closed_us)
        if not _within(closed_day, low, high):
            continue
        key = time_key(closed_day, group_by) if by_time else _dimension(fact, group_by)
        bucket = buckets.setdefault(key, _Bucket())
        bucket.closed += 1
        total.closed += 1
        if fact.closed_by not in UNRESOLVED:
            seconds = max(0, fact.closed_us - fact.opened_us) / 1_000_000
            inside = _business(fact.opened_us, fact.closed_us, business)
            for target in (bucket, total):
                target.resolutions.append(seconds)
                target.resolutions_business.append(inside)
    opened_null = group_by not in OPENED_COUNTED
    rows = [b.row(key, opened_null) for key, b in sorted(buckets.items())
            if b.opened or b.closed or b.responses]
    return {
        "workspace_id": query.workspace_id, "group_by": group_by, "tz": query.tz,
        "from": low.isoformat() if low else None, "to": high.isoformat() if high else None,
        "rows": rows, "total": total.row(None),
    }
