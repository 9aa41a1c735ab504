"""``CellArrays`` (the replay workers' numpy cells) gives exactly the cells of ``CellSums``
(the reference, itself checked against PostgreSQL's rebuild), and its split by owner
gives every cell to exactly one worker."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.projections.domain.cell_arrays import CellArrays, cells_of, owner_of
from services.projections.domain.row_cells import CellRow, CellSums, merged_rows
from services.projections.domain.rows import ConversationRow

DAY = 86_400_000_000
TEXTS = st.sampled_from([None, "", "none", "unassigned", "web", "email", "a1", "a2", "t\u00e9"])
CLOSERS = st.sampled_from([None, "", "none", "agent", "merge", "inactivity", "contact"])
#: moments near slot boundaries (quarter hours, six hours) and negative durations
MOMENTS = st.integers(0, 3 * DAY).map(lambda us: us - us % 1_000_000) | st.sampled_from(
    [0, 900_000_000 - 1, 900_000_000, 6 * 3_600_000_000 - 1, 6 * 3_600_000_000, DAY])


@st.composite
def rows(draw: st.DrawFn) -> ConversationRow:
    opened = draw(MOMENTS)
    closed = draw(st.none() | MOMENTS)
    return ConversationRow(
        conversation_id=f"c{draw(st.integers(0, 10**9))}",
        workspace_id=draw(st.sampled_from(["w1", "w2", "w\u00e9"])),
        contact_id=f"k{draw(st.integers(0, 50))}",
        channel=draw(TEXTS), opened_us=opened, opened_by=draw(st.sampled_from(["contact",
                                                                               "agent", ""])),
        closed_us=closed, closed_by=draw(CLOSERS) if closed is not None else None,
        assignee_id=draw(TEXTS), team_id=draw(TEXTS),
        first_message_us=draw(st.none() | MOMENTS), first_response_us=draw(st.none() | MOMENTS),
        recontact=draw(st.booleans()))


def _reference(found: list[ConversationRow]) -> list[CellRow]:
    sums = CellSums()
    sums.add(found)
    return sorted(merged_rows([sums.summed()]))


def _arrays(found: list[ConversationRow], chunk: int) -> CellArrays:
    arrays = CellArrays()
    for start in range(0, len(found), chunk):
        arrays.add(found[start:start + chunk])
    return arrays


@settings(max_examples=150, deadline=None)
@given(st.lists(rows(), max_size=60), st.integers(1, 25))
def test_the_arrays_give_the_cells_of_the_reference(found: list[ConversationRow],
                                                    chunk: int) -> None:
    assert sorted(cells_of(_arrays(found, chunk).parts(1))) == _reference(found)


@settings(max_examples=100, deadline=None)
@given(st.lists(rows(), max_size=80), st.integers(2, 4))
def test_the_parts_split_by_owner_add_up_to_every_cell_once(found: list[ConversationRow],
                                                           workers: int) -> None:
    """Each worker's contributions split by owner; each owner adds up its parts from
    every worker: every cell of the whole, each in exactly one owner's cells."""
    mine = [_arrays(found[worker::workers], 7).parts(workers) for worker in range(workers)]
    owned = [list(cells_of([split[me] for split in mine])) for me in range(workers)]
    keys = [cell[:5] for cells in owned for cell in cells]
    assert len(keys) == len(set(keys))  # no cell written by two owners
    assert sorted(cell for cells in owned for cell in cells) == _reference(found)


def test_every_owner_gets_a_share_and_parts_carry_their_names() -> None:
    found = [ConversationRow(f"c{n}", f"w{n % 3}", f"k{n}", f"ch{n % 5}", n * 900_000_000,
                             "contact", closed_us=(n + 3) * 900_000_000, closed_by="agent",
                             first_message_us=n * 900_000_000,
                             first_response_us=(n + 1) * 900_000_000) for n in range(600)]
    parts = _arrays(found, 100).parts(3)
    sizes = [len(part["ws"]) for _, part in parts]
    assert sum(sizes) == 600 * (3 + 6 + 6) and min(sizes) > 600
    names, part = parts[0]
    columns: dict[str, Any] = part
    assert set(owner_of(names, columns, 3).tolist()) == {0}
    assert sorted(cell for p in parts for cell in cells_of([p])) == _reference(found)
