"""Reading only the facts of a window (``fact_window``) never changes the metrics.

Stores select facts with a moment (opened, closed, first response) in the
window; :func:`compute` then decides exactly. Over random facts, ranges, zones
and groupings the metrics of the window's facts equal those of all facts.
"""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.projections.domain.metrics import (
    GROUPINGS,
    Fact,
    MetricsQuery,
    compute,
    fact_window,
    in_window,
)

DAY_US = 86_400 * 1_000_000
BASE_US = 1_790_000_000 * 1_000_000  # 2026-09
ZONES = ("UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Madrid", "Asia/Kolkata",
         "America/Santiago")


@st.composite
def facts(draw: st.DrawFn) -> Fact:
    opened = BASE_US + draw(st.integers(0, 40 * DAY_US))
    closed = draw(st.none() | st.integers(0, 5 * DAY_US).map(lambda d: opened + d))
    first = draw(st.none() | st.integers(0, DAY_US).map(lambda d: opened + d))
    responded = None if first is None else draw(
        st.none() | st.integers(0, 3 * DAY_US).map(lambda d: first + d))
    return Fact(opened, closed, draw(st.sampled_from(("whatsapp", None))), "contact",
                None if closed is None else draw(st.sampled_from(("user", "merge"))),
                draw(st.sampled_from(("ana", None))), None, first, responded,
                draw(st.booleans()))


@settings(max_examples=300, deadline=None)
@given(st.lists(facts(), max_size=40), st.sampled_from(ZONES), st.sampled_from(GROUPINGS),
       st.none() | st.integers(0, 45), st.none() | st.integers(0, 45))
def test_metrics_of_the_window_equal_metrics_of_everything(
        all_facts: list[Fact], zone: str, group_by: str, start: int | None,
        length: int | None) -> None:
    first_day = date(2026, 9, 21)
    low = None if start is None else first_day + timedelta(days=start)
    high = None if length is None else (low or first_day) + timedelta(days=length % 10)
    query = MetricsQuery("ws", group_by, zone, low, high)
    window = fact_window(query)
    chosen = all_facts if window is None else [f for f in all_facts if in_window(f, window)]
    assert compute(query, chosen) == compute(query, all_facts)


def test_open_ends_and_extreme_dates() -> None:
    assert fact_window(MetricsQuery("ws")) is None
    low, high = fact_window(MetricsQuery("ws", date_from=date(1, 1, 1),
                                         date_to=date(9999, 12, 31)))  # type: ignore[misc]
    assert low < -(2**62) and high > 2**62
    window = fact_window(MetricsQuery("ws", date_from=date(2026, 11, 25)))
    assert window is not None and window[1] > 2**62
    late = Fact(BASE_US * 2, None, None, "contact", None, None, None)
    early = Fact(0, None, None, "contact", None, None, None)
    assert in_window(late, window) and not in_window(early, window)
