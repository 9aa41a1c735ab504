"""A page's metric units at once (``page_units``) are each row's ``units_of``, together."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.projections.adapters.cells import LEVEL_US, page_units, units_of

_MOMENT = st.one_of(st.none(), st.integers(-(2**62), 2**62),
                    st.sampled_from([0, LEVEL_US[0], LEVEL_US[1] - 1, -1, -LEVEL_US[1]]))
_ROW = st.tuples(st.sampled_from(["ws1", "ws2", ""]), _MOMENT, _MOMENT, _MOMENT, _MOMENT)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ROW, max_size=40))
def test_page_units_are_the_rows_units(rows: list[tuple[str, int | None, int | None,
                                                        int | None, int | None]]) -> None:
    assert page_units(rows) == {unit for row in rows for unit in units_of(*row)}


def test_a_response_without_a_first_message_has_no_unit() -> None:
    assert page_units([("ws", None, None, 5, None)]) == set()
    assert {kind for _, _, kind, _ in page_units([("ws", 1, 2, 3, 4)])} == {1, 2, 3}


_NEAR = st.builds(lambda span, quarter, offset: span * LEVEL_US[1] + quarter * LEVEL_US[0]
                  + offset, st.integers(-3, 3), st.integers(-1, 24),
                  st.sampled_from([-1, 0, 1, LEVEL_US[0] - 1]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ws1", "ws2"]), _NEAR, _NEAR, _NEAR,
                          st.one_of(st.none(), _NEAR)), max_size=60))
def test_rows_sharing_slots_at_their_edges_give_each_rows_units(
        rows: list[tuple[str, int, int, int, int | None]]) -> None:
    """Many rows in few slots, moments on and beside the quarter and 6-hour edges
    (either side of zero): the units made once per quarter-hour slot are still each
    row's, at both levels."""
    assert page_units(rows) == {unit for row in rows for unit in units_of(*row)}
