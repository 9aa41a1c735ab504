"""How long a Dashboard summary feed waits between computations (no clock involved)."""

from __future__ import annotations

import pytest

from services.http.live_feed import COALESCE_SECONDS, gap


@pytest.mark.parametrize(("took", "pause", "wait"), [
    (0.0, 0.0, COALESCE_SECONDS),  # quick: at most one per COALESCE_SECONDS, start to start
    (0.05, 0.0, COALESCE_SECONDS - 0.05),
    (COALESCE_SECONDS, 0.0, COALESCE_SECONDS),
    (1.5, 0.0, 1.5),  # slow: as long again, so summaries take at most half the time
    (0.01, 2.0, 2.0),  # after a failure: the retry pause
    (3.0, 2.0, 3.0),
])
def test_the_gap_keeps_summaries_to_one_per_window_and_half_the_time(
        took: float, pause: float, wait: float) -> None:
    assert gap(100.0, 100.0 + took, pause) == pytest.approx(wait)
