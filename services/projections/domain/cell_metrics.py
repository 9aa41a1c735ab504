"""The metrics of CONTRACT §3 / §6.6 from metric cells (:mod:`.cells`), exactly.

:func:`~.metrics.compute` stays the reference. Here a query is answered from the
cells (a few thousand rows for a year) in three steps:

- :func:`plan` turns ``from``/``to`` in the query's zone into UTC instants with
  the zone's own offsets (``zoneinfo``, :mod:`.zone_offsets`): the first instant of
  ``from`` and of the day after ``to``. Time groupings read the quarter-hour cells
  of that interval; dimension groupings read the 6-hour cells of the whole slots
  inside it plus the partial slots at both ends, aggregated from the rows.
- :class:`Combiner` gives each cell its bucket: for time groupings the local date
  of its slot, which must be one date for the whole slot (else :class:`NotExact`:
  the zone has a midnight inside a quarter hour, such as a historical LMT offset).
- :func:`duration_stats_of` computes the statistics from the bucket's exact
  microsecond values: count, average (the exact sum, rounded as Python rounds
  ``fsum(values) / n``), the two ranks each percentile interpolates between
  (``numpy.partition``: a selection, no sort), min and max, then the same float
  operations as :func:`~.durations.percentile` and :func:`~.durations.seconds`.

Everything is decided in Python with the same ``zoneinfo`` data as the reference,
so any IANA zone and any DST rule gives the reference's answer; what cannot be
certain (moments outside 1900..2150, a duration of 2**53 microseconds or more)
raises :class:`NotExact` and the caller computes in Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Final

from services.projections.domain.durations import STAT_KEYS, seconds
from services.projections.domain.local_days import (
    DAY_US,
    EPOCH_ORDINAL,
    SAFE_HIGH_US,
    SAFE_LOW_US,
    LocalDays,
    NotExact,
    safe_day,
)
from services.projections.domain.metrics import (
    OPENED_COUNTED,
    TIME_GROUPINGS,
    MetricsQuery,
    compute,
    time_key,
)

if TYPE_CHECKING:  # imported when first needed: every command and service loads this module
    import numpy as np

QUARTER_US: Final = 900_000_000
SPAN_US: Final = 6 * 3_600_000_000  # the dimensions' cells (adapters/cells.py)
_EXACT_FLOAT: Final = 2**53
_DIMENSION: Final = {"channel": 1, "opened_by": 2, "closed_by": 3, "assignee": 4, "team": 5}
_BIG_ENDIAN: Final = ">i8"


@dataclass(frozen=True, slots=True)
class Plan:
    """What to read for one query.

    Time groupings (``level`` 0): the quarter-hour cells between ``edges[0]`` and
    ``edges[-1]``, grouped by ``width_bucket(slot, edges)``: ``edges[i]`` is the first
    instant of local day ``first_day + i``. Dimension groupings (``level`` 1): the
    ``dims`` 6-hour cells with ``low <= slot < high`` (None: unbounded) grouped by key,
    plus the ``pieces`` (UTC intervals) aggregated from the rows."""

    level: int
    dims: tuple[int, ...]
    low: int | None
    high: int | None
    pieces: tuple[tuple[int, int], ...]
    first_day: int | None
    edges: tuple[int, ...] = ()
    #: dimension groupings: the kinds whose total comes from the channel cells (every
    #: contribution has one channel); the others' total is the union of the buckets
    total_kinds: tuple[int, ...] = (1, 2, 3)


def _days_of(days: LocalDays, data: tuple[int, int] | None, first: int | None,
             last: int | None) -> tuple[int, int] | None:
    """The local days to cover: the range, its open ends closed by the data's."""
    if data is None:
        if first is None or last is None:
            return None  # no cells at all: nothing counts
        return first, last
    for moment in data:
        if not SAFE_LOW_US <= moment < SAFE_HIGH_US:
            raise NotExact("a moment is outside 1900..2150")
    low = first if first is not None else days.day(data[0])
    high = last if last is not None else days.day(data[1])
    return low, high


def plan(query: MetricsQuery, data: tuple[int, int] | None = None) -> Plan:
    """The cells and partial intervals that hold exactly the query's contributions.

    ``data``: the first and last slot of the workspace's cells of the grouping's
    dimension (only needed when ``from`` or ``to`` is open; None: no cells)."""
    first, last = safe_day(query.date_from), safe_day(query.date_to)
    around = first if first is not None else last if last is not None else 20_000
    days = LocalDays(query.tz, around * DAY_US - 3 * DAY_US,
                     ((last if last is not None else around) + 4) * DAY_US)
    if query.group_by in TIME_GROUPINGS:
        span = _days_of(days, data, first, last)
        if span is None or span[0] > span[1]:
            return Plan(0, (0,), None, None, (), None)
        edges = tuple(days.start(day) for day in range(span[0], span[1] + 2))
        days.check_monotone(edges[0] - 2 * DAY_US, edges[-1] + 2 * DAY_US)
        if any(edge % QUARTER_US for edge in edges):
            raise NotExact("a local midnight falls inside a quarter hour")
        return Plan(0, (0,), edges[0], edges[-1], (), span[0], edges)
    dim = _DIMENSION[query.group_by]
    dims = (1,) if dim == 1 else (dim, 1)
    # kind 1 has cells for channel and opened_by only; closed_by leaves out the first
    # responses of open conversations
    total_kinds = ((1, 2, 3) if dim == 1 else (1,) if dim in (2, 4, 5) else (1, 2))
    start = None if first is None else days.start(first)
    end = None if last is None else days.start(last + 1)
    for edge in (start, end):
        if edge is not None:
            days.check_monotone(edge - 2 * DAY_US, edge + 2 * DAY_US)
    if (start is None or end is None) and data is not None:
        _days_of(days, data, first, last)  # the cells' moments are safe
    whole_low = None if start is None else -(-start // SPAN_US) * SPAN_US
    whole_high = None if end is None else end // SPAN_US * SPAN_US
    if whole_low is not None and whole_high is not None and whole_low >= whole_high:
        assert start is not None and end is not None
        return Plan(1, dims, 0, 0, ((start, end),), first, total_kinds=total_kinds)
    pieces = []
    if start is not None and whole_low is not None and start < whole_low:
        pieces.append((start, whole_low))
    if end is not None and whole_high is not None and whole_high < end:
        pieces.append((whole_high, end))
    return Plan(1, dims, whole_low, whole_high, tuple(pieces), first,
                total_kinds=total_kinds)


@dataclass(slots=True)
class _Bucket:
    opened: int = 0
    recontacts: int = 0
    closed: int = 0
    responses: list[bytes] = field(default_factory=list)
    resolutions: list[bytes] = field(default_factory=list)
    responses_business: list[bytes] = field(default_factory=list)
    resolutions_business: list[bytes] = field(default_factory=list)


def _average(count: int, total_us: int, largest: float, values: np.ndarray[Any, Any]) -> float:
    """``fsum(values) / count`` as the reference shows it: from the exact sum when it is
    far from a rounding tie at 3 decimals (the float error of ``fsum(values) / n`` is
    below 8 ulps of the largest value), else with ``fsum`` itself."""
    denominator = count * 1000  # the exact average in milliseconds: total_us / denominator
    distance = abs(2 * (total_us % denominator) - denominator)  # to .5 ms, x 2 * denominator
    error = 8 * largest / 2**53 * 1000 * 1.01  # milliseconds
    if distance > 2 * denominator * error:
        return (2 * total_us + denominator) // (2 * denominator) / 1000
    import numpy as np

    floats: list[float] = (values.astype(np.float64) / 1e6).tolist()
    shown = seconds(math.fsum(floats) / count)
    assert shown is not None
    return shown


def duration_stats_of(parts: Sequence[bytes]) -> dict[str, Any]:
    """The six statistics (as :func:`~.durations.duration_stats` shows them) of the
    microsecond values packed in ``parts``."""
    if not any(parts):
        return {key: 0 if key == "count" else None for key in STAT_KEYS}
    import numpy as np

    values = np.frombuffer(b"".join(parts), dtype=_BIG_ENDIAN).astype(np.int64)
    count = int(values.size)
    if not count:
        return {key: 0 if key == "count" else None for key in STAT_KEYS}
    low_us, high_us = int(values.min()), int(values.max())
    if low_us < 0 or high_us >= _EXACT_FLOAT:
        raise NotExact("a duration is not exact as a float")
    total = (int(values.sum()) if high_us * count < 2**63
             else sum(int(v) for v in values.tolist()))
    stats: dict[str, Any] = {"count": count, "min": low_us / 1_000_000,
                             "max": high_us / 1_000_000}
    stats["avg"] = _average(count, total, stats["max"], values)
    ranks: dict[float, tuple[float, int, int]] = {}
    for q in (0.5, 0.9):
        position = (count - 1) * q
        rank = math.floor(position)
        ranks[q] = (position, rank, min(rank + 1, count - 1))
    wanted = sorted({r for _, low, high in ranks.values() for r in (low, high)})
    values.partition(wanted)  # in place: values is this call's own copy
    chosen = values
    for q, name in ((0.5, "p50"), (0.9, "p90")):
        position, rank, upper = ranks[q]
        lo, hi = int(chosen[rank]) / 1_000_000, int(chosen[upper]) / 1_000_000
        stats[name] = lo + (hi - lo) * (position - rank)
    return {key: stats[key] if key == "count" else seconds(stats[key]) for key in STAT_KEYS}


#: one cell or partial-interval aggregate: (dim, slot, kind, key, n, rc, vals, bkey, bvals)
CellRow = Sequence[Any]


class Combiner:
    """Puts grouped cell rows into buckets and builds the metrics JSON."""

    def __init__(self, query: MetricsQuery, the_plan: Plan, business_key: str | None) -> None:
        self.query = query
        self.plan = the_plan
        self.business_key = business_key
        self.buckets: dict[str, _Bucket] = {}
        self.total = _Bucket()
        self.stale = False

    def _time_key(self, index: int) -> str:
        """The bucket of ``width_bucket`` index ``index`` (1: the first day)."""
        assert self.plan.first_day is not None
        day = date.fromordinal(self.plan.first_day + index - 1 + EPOCH_ORDINAL)
        return time_key(day, self.query.group_by)

    def add(self, rows: Iterable[CellRow]) -> None:
        """Rows ``(dim, bucket, kind, key, n, rc, vals, bkey, bvals)``: ``bucket`` is the
        ``width_bucket`` index for time groupings, ``key`` the dimension key."""
        time_grouping = self.plan.level == 0
        grouping_dim = self.plan.dims[0]
        total_kinds = self.plan.total_kinds
        business = self.business_key is not None
        buckets = self.buckets
        for row in rows:
            dim, kind, key = row[0], row[2], row[3]
            if business and kind != 1 and row[7] != self.business_key:
                self.stale = True
                continue
            if time_grouping:
                name = self._time_key(row[1])
                bucket = buckets.get(name)
                if bucket is None:
                    bucket = buckets[name] = _Bucket()
                self._count(bucket, kind, row)
                self._count(self.total, kind, row)
            elif dim == grouping_dim:
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = _Bucket()
                self._count(bucket, kind, row)
                if dim == 1 or kind not in total_kinds:
                    self._count(self.total, kind, row)
            elif kind in total_kinds:
                self._count(self.total, kind, row)

    @staticmethod
    def _count(target: _Bucket, kind: int, row: CellRow) -> None:
        if kind == 1:
            target.opened += row[4]
            target.recontacts += row[5]
        elif kind == 2:
            target.responses.append(row[6])
            target.responses_business.append(row[8] if row[8] is not None else row[6])
        else:
            target.closed += row[4]
            target.resolutions.append(row[6])
            target.resolutions_business.append(row[8] if row[8] is not None else row[6])

    def _row(self, key: str | None, bucket: _Bucket, opened_null: bool) -> dict[str, Any]:
        responses = duration_stats_of(bucket.responses)
        resolutions = duration_stats_of(bucket.resolutions)
        business = self.business_key is not None
        return {
            "key": key, "opened": None if opened_null else bucket.opened,
            "closed": bucket.closed, "resolution_seconds": resolutions,
            "first_response_seconds": responses,
            "first_response_business_seconds":
                duration_stats_of(bucket.responses_business) if business else dict(responses),
            "resolution_business_seconds":
                duration_stats_of(bucket.resolutions_business) if business
                else dict(resolutions),
            "recontacts": None if opened_null else bucket.recontacts,
        }

    def metrics(self) -> dict[str, Any]:
        query = self.query
        opened_null = query.group_by not in OPENED_COUNTED
        rows = [self._row(key, bucket, opened_null)
                for key, bucket in sorted(self.buckets.items())
                if bucket.opened or bucket.closed or any(bucket.responses)]
        low, high = query.date_from, query.date_to
        result = {
            "workspace_id": query.workspace_id, "group_by": query.group_by, "tz": query.tz,
            "from": low.isoformat() if low else None, "to": high.isoformat() if high else None,
            "rows": rows, "total": self._row(None, self.total, False),
        }
        total: dict[str, Any] = result["total"]  # type: ignore[assignment]
        if list(result) != _REFERENCE_TOP or list(total) != _REFERENCE_FIELDS:
            raise NotExact("the reference has other fields: compute there")
        return result


_REFERENCE: Final = compute(MetricsQuery(""), [])
_REFERENCE_FIELDS: Final = list(_REFERENCE["total"])
_REFERENCE_TOP: Final = list(_REFERENCE)
