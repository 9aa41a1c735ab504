"""Hypothesis strategies shared by several test modules (``tests/`` is on the path)."""

from __future__ import annotations

from hypothesis import strategies as st

from schemas.workspace import DAYS, BusinessInterval, Schedule


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    intervals = []
    for day in draw(st.sets(st.sampled_from(DAYS), min_size=1)):
        cuts = sorted(draw(st.sets(st.integers(0, 1440), min_size=2, max_size=6)))
        for start, end in zip(cuts[::2], cuts[1::2], strict=False):
            intervals.append(BusinessInterval(
                day=day, start=f"{start // 60:02d}:{start % 60:02d}",
                end=f"{end // 60:02d}:{end % 60:02d}"))
    return tuple(intervals)
