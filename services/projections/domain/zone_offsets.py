"""UTC offset changes of a time zone, found once per zone and year and cached.

``zoneinfo`` answers "what is the offset at instant t" but does not list its
transitions. :class:`ZoneOffsets` finds them with public calls only: it probes the
offset every 12 hours and bisects each change to the exact second. Two changes that
cancel out within one probe step would be missed; in the tz database since 1900 the
closest such pair is 4 days apart (Africa/Freetown, 1939), and changes that do not
cancel are all found however close they are. Coverage grows on demand in whole
chunks of ~1 year, so a metrics query pays the probing once per zone and year
(~1 ms), then a lookup is a bisection in a short list.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime
from threading import Lock
from typing import Final
from zoneinfo import ZoneInfo

US: Final = 1_000_000
_STEP_S: Final = 12 * 3_600
_CHUNK_S: Final = 2**25  # ~388 days
_FIRST_S: Final = -62_135_596_800 + 2 * 86_400  # datetime's range, with a margin
_LAST_S: Final = 253_402_300_799 - 2 * 86_400


Table = tuple[int, int, list[int], list[int]]


class ZoneOffsets:
    """Offset changes of one zone over a covered range of instants (microseconds).

    :meth:`table` returns ``(low_us, high_us, changes, offsets)``: ``changes[i]`` is an
    instant at which the offset changes; ``offsets[i]`` is the offset (microseconds
    east of UTC) in force on ``[changes[i-1], changes[i])``, so ``offsets`` has one
    entry more than ``changes``. A table is never modified once returned (growing
    builds a new one), so readers need no lock.
    """

    __slots__ = ("_lock", "_table", "_tz")

    def __init__(self, tz: ZoneInfo) -> None:
        self._tz = tz
        self._lock = Lock()
        self._table: Table | None = None

    def offset_at(self, instant_us: int) -> int:
        """The offset in force at ``instant_us`` (microseconds since the epoch, UTC)."""
        _, _, changes, offsets = self.table(instant_us, instant_us)
        return offsets[bisect_right(changes, instant_us)]

    def table(self, start_us: int, end_us: int) -> Table:
        """A table whose covered range ``[low_us, high_us]`` contains both instants."""
        table = self._table
        if table is not None and table[0] <= start_us and end_us <= table[1]:
            return table
        with self._lock:
            low_s = (start_us // US // _CHUNK_S) * _CHUNK_S
            high_s = -(-end_us // US // _CHUNK_S) * _CHUNK_S
            if low_s == high_s:
                high_s += _CHUNK_S
            if self._table is None:
                changes, offsets = self._scan(low_s, high_s)
            else:
                low_us, high_us, changes, offsets = self._table
                low_s, high_s = min(low_s, low_us // US), max(high_s, high_us // US)
                if low_s < low_us // US:
                    left_changes, left_offsets = self._scan(low_s, low_us // US)
                    changes, offsets = left_changes + changes, left_offsets + offsets[1:]
                if high_s > high_us // US:
                    right_changes, right_offsets = self._scan(high_us // US, high_s)
                    changes, offsets = changes + right_changes, offsets + right_offsets[1:]
            self._table = (low_s * US, high_s * US, changes, offsets)
            return self._table

    def _scan(self, low_s: int, high_s: int) -> tuple[list[int], list[int]]:
        """Changes in ``(low_s, high_s]`` and the offsets around them."""
        changes: list[int] = []
        offsets = [self._offset_us(low_s)]
        probe = low_s
        while probe < high_s:
            following = min(probe + _STEP_S, high_s)
            while self._offset_us(following) != offsets[-1]:
                at = self._first_change(probe, following, offsets[-1])
                changes.append(at * US)
                offsets.append(self._offset_us(at))
                probe = at
            probe = following
        return changes, offsets

    def _first_change(self, low_s: int, high_s: int, offset: int) -> int:
        """The first second in ``(low_s, high_s]`` whose offset is not ``offset``."""
        while high_s - low_s > 1:
            middle = (low_s + high_s) // 2
            if self._offset_us(middle) == offset:
                low_s = middle
            else:
                high_s = middle
        return high_s

    def _offset_us(self, instant_s: int) -> int:
        clamped = min(max(instant_s, _FIRST_S), _LAST_S)
        offset = datetime.fromtimestamp(clamped, self._tz).utcoffset()
        assert offset is not None
        return (offset.days * 86_400 + offset.seconds) * US + offset.microseconds
