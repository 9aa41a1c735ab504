"""PostgreSQL's metric cells answer exactly what the Python reference computes.

Random conversations (DST days, merge / inactivity / unknown closings, empty and
missing dimensions, first responses before the first message) in random zones,
groupings, ranges and business-hours schedules: the JSON the store builds from its
metric cells (``aggregate_metrics``) is not None and equals ``compute`` over the
same facts, key for key and float for float. Cells kept up by live upserts equal
cells rebuilt from the rows (replay); a schedule change is picked up; where the
cells cannot be sure (a local midnight inside a quarter hour, moments outside
1900..2150) the store declines and the fallback gives the reference.
"""

from __future__ import annotations

import itertools
import pickle
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from conftest import fresh_schema_url, with_query
from eventsourcing.persistence import DataError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.workspace import WorkspaceSettings
from services.composition import open_stores
from services.conversation.application.ports import Position
from services.projections.adapters.cells_parts import rebuild_in_parts
from services.projections.application.queries import metrics_of as metrics
from services.projections.domain.metrics import GROUPINGS, Fact, MetricsQuery, compute, fact_window
from services.projections.domain.row_cells import CellSums, merged_rows
from services.projections.domain.rows import ConversationRow
from services.projections.domain.service_levels import Schedule, schedule_of
from services.settings import Settings

DAY_US = 86_400 * 1_000_000
BASE_US = 1_774_000_000 * 1_000_000  # 2026-03-20: both 2026 DST changes of Europe and the US
ZONES = ("UTC", "Europe/Madrid", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati",
         "America/Santiago", "Australia/Lord_Howe", "Asia/Kathmandu", "CET")
SCHEDULES = (
    WorkspaceSettings(timezone="Europe/Madrid", business_hours=[
        {"day": d, "start": "09:00", "end": "18:00"} for d in ("mon", "tue", "wed", "thu", "fri")]),
    WorkspaceSettings(timezone="America/New_York", business_hours=[
        {"day": "sun", "start": "00:00", "end": "24:00"},
        {"day": "wed", "start": "01:30", "end": "02:45"}]),
    WorkspaceSettings(timezone="Asia/Kolkata", business_hours=[
        {"day": "sat", "start": "10:15", "end": "14:00"}]),
)
_IDS = itertools.count()


@pytest.fixture(scope="module")
def store(postgres_database_url: str) -> Iterator[Any]:
    with fresh_schema_url(postgres_database_url, "sqlm") as url:
        stores = open_stores(Settings(database_url=url))
        yield stores.read_models
        stores.close()


durations = st.integers(0, 5 * DAY_US) | st.integers(0, 3_000).map(lambda s: s * 1_000_000) \
    | st.integers(0, 3_000_000).map(lambda ms: ms * 1_000)


@st.composite
def facts(draw: st.DrawFn) -> Fact:
    opened = BASE_US + draw(st.integers(0, 240 * DAY_US))
    closed = draw(st.none() | durations.map(lambda d: opened + d))
    first = draw(st.none() | st.integers(-DAY_US, DAY_US).map(lambda d: opened + d))
    responded = None if first is None else draw(
        st.none() | st.integers(-DAY_US, 3 * DAY_US).map(lambda d: first + d))
    return Fact(opened, closed, draw(st.sampled_from(("whatsapp", "email", "", None))),
                draw(st.sampled_from(("contact", "user", ""))),
                None if closed is None else draw(st.sampled_from(
                    ("user", "merge", "inactivity", "automation", "", None))),
                draw(st.sampled_from(("ana", "bob", "", None))),
                draw(st.sampled_from(("support", None))), first, responded,
                draw(st.booleans()))


def rows_of(workspace: str, chosen: list[Fact]) -> list[ConversationRow]:
    return [ConversationRow(
        conversation_id=f"k{next(_IDS)}", workspace_id=workspace, contact_id=f"c{n}",
        channel=f.channel, opened_us=f.opened_us, opened_by=f.opened_by, closed_us=f.closed_us,
        closed_by=f.closed_by, assignee_id=f.assignee_id, team_id=f.team_id,
        first_message_us=f.first_message_us, first_response_us=f.first_response_us,
        recontact=f.recontact) for n, f in enumerate(chosen)]


def save(store: Any, workspace: str, chosen: list[Fact]) -> None:
    store.copy_rows(rows_of(workspace, chosen))


def query_for(workspace: str, zone: str, group_by: str, start: int | None,
              length: int | None) -> MetricsQuery:
    first_day = date(2026, 3, 20)
    low = None if start is None else first_day + timedelta(days=start)
    high = None if length is None else (low or first_day) + timedelta(days=length)
    return MetricsQuery(workspace, group_by, zone, low, high)


def fast(store: Any, query: MetricsQuery, schedule: Schedule | None = None) -> Any:
    return store.aggregate_metrics(query, fact_window(query), schedule)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(facts(), max_size=60), st.sampled_from(ZONES),
       st.none() | st.integers(0, 250), st.none() | st.integers(0, 60),
       st.none() | st.sampled_from(SCHEDULES))
def test_the_cells_answer_exactly_what_the_reference_computes(  # noqa: PLR0917
        store: Any, chosen: list[Fact], zone: str, start: int | None,
        length: int | None, workspace_settings: WorkspaceSettings | None) -> None:
    workspace = f"ws{next(_IDS)}"
    save(store, workspace, chosen)
    schedule = None if workspace_settings is None else schedule_of(workspace_settings)
    clock = None if schedule is None else schedule.clock
    for group_by in GROUPINGS:
        query = query_for(workspace, zone, group_by, start, length)
        found = fast(store, query, schedule)
        assert found is not None, group_by  # the cells answered, not the fallback
        assert found == compute(query, chosen, clock), group_by


def cells(store: Any) -> list[tuple[Any, ...]]:
    with store.datastore.transaction(commit=False) as curs:
        curs.execute(f'SELECT * FROM "{store.datastore.schema}".metric_cells '
                     "ORDER BY workspace_id, dim, slot, kind, key")
        return [tuple(row.values()) for row in curs.fetchall()]


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(facts(), min_size=1, max_size=30), st.data())
def test_cells_kept_by_live_upserts_equal_cells_rebuilt_by_replay(
        store: Any, chosen: list[Fact], data: st.DataObject) -> None:
    workspace = f"live{next(_IDS)}"
    rows = rows_of(workspace, chosen)
    # live: the rows arrive open, in random batches, then change (assigned, responded,
    # closed) in other batches, as the projector writes them
    opened = [ConversationRow(conversation_id=r.conversation_id, workspace_id=workspace,
                              contact_id=r.contact_id, channel=r.channel, opened_us=r.opened_us,
                              opened_by=r.opened_by, recontact=r.recontact,
                              assignee_id=data.draw(st.sampled_from(("zoe", None))))
              for r in rows]
    position = store.position("projection:cells-test") or 0
    for batch in (opened, data.draw(st.permutations(rows))):
        cut = data.draw(st.integers(0, len(batch)))
        for part in (batch[:cut], batch[cut:]):
            position += 1
            store.save(part, Position("projection:cells-test", position))
    store.refresh_cells()
    live = cells(store)
    query = MetricsQuery(workspace, data.draw(st.sampled_from(GROUPINGS)), "Europe/Madrid")
    assert fast(store, query) == compute(query, chosen)
    store.rebuild_cells()
    assert cells(store) == live
    # several connections at once (directly: rebuild_cells would hide a failed part)
    rebuild_in_parts(store.cells, store.datastore, data.draw(st.integers(2, 4)))
    assert cells(store) == live
    # summed in Python by a parallel replay's workers, each from its part of the rows
    cut = data.draw(st.integers(0, len(rows)))
    parts = [CellSums(), CellSums()]
    parts[0].add(rows[:cut])
    parts[1].add(rows[cut:])
    summed = [pickle.loads(pickle.dumps(part.summed())) for part in parts]  # as sent
    store.write_cells(merged_rows(summed))  # every cell: only this workspace's are left
    assert cells(store) == [cell for cell in live if cell[0] == workspace]
    store.rebuild_cells()  # the other workspaces' cells back
    assert cells(store) == live


def test_cells_rebuilt_in_parts_fall_back_to_one_transaction_when_a_part_fails(
        store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = rows_of("ws_parts", [Fact(BASE_US + n * 3_600_000_000, None, "email", "contact",
                                     None, None, None) for n in range(50)])
    store.save(rows, Position("projection:parts-test", 1))
    store.rebuild_cells()
    expected = cells(store)
    assert expected
    real = store.cells.rebuild_part

    def second_fails(curs: Any, part: int, parts: int) -> None:
        real(curs, part, parts)
        if part == 1:
            curs.execute("SELECT 1/0")

    monkeypatch.setattr(store.cells, "rebuild_part", second_fails)
    store.rebuild_cells(parts=3)
    assert cells(store) == expected
    with store.datastore.transaction(commit=False) as curs:
        curs.execute(store.cells.state)
        assert curs.fetchone()["ready"] is True


def test_summed_cells_with_a_nul_in_a_key_are_refused_whole(store: Any) -> None:
    """The rows store U+FFFD for a NUL (``copy_rows``); the summed cells would not match
    them, so writing them fails and changes nothing (the replay then rebuilds them)."""
    rows = rows_of("ws_nul", [Fact(BASE_US + n * 3_600_000_000, None, "e\x00mail", "contact",
                                   None, None, None) for n in range(5)])
    store.copy_rows(rows)
    store.rebuild_cells()
    expected = cells(store)
    assert any(cell[4] == "e\ufffdmail" for cell in expected)
    summed = CellSums()
    summed.add(rows)
    with pytest.raises(DataError):  # eventsourcing's, from psycopg's
        store.write_cells(merged_rows([summed.summed()]))
    assert cells(store) == expected


def test_a_schedule_change_and_new_rows_are_picked_up(store: Any) -> None:
    chosen = [Fact(BASE_US + n * 3_600_000_000, BASE_US + n * 3_600_000_000 + n * 997_000_000,
                   "email", "contact", "user", "ana", None, BASE_US + n * 3_600_000_000,
                   BASE_US + n * 3_600_000_000 + 77_000_000 * n) for n in range(300)]
    save(store, "ws_schedules", chosen)
    query = MetricsQuery("ws_schedules", "day", "Europe/Madrid", date(2026, 3, 21),
                         date(2026, 4, 2))
    for workspace_settings in (*SCHEDULES, SCHEDULES[0]):
        schedule = schedule_of(workspace_settings)
        assert schedule is not None
        assert fast(store, query, schedule) == compute(query, chosen, schedule.clock)
    more = [Fact(BASE_US + 5 * DAY_US, BASE_US + 6 * DAY_US, "email", "user", "user", None, None)]
    store.save(rows_of("ws_schedules", more), Position("projection:schedule-test", 1))
    schedule = schedule_of(SCHEDULES[0])
    assert schedule is not None
    assert fast(store, query, schedule) == compute(query, chosen + more, schedule.clock)
    assert fast(store, query) == compute(query, chosen + more)


def test_rounding_ties_and_abbreviated_zones_are_exact(store: Any) -> None:
    # two resolutions of 1 s and 2.001 s: the average 1.5005 s is a rounding tie
    tie = [Fact(BASE_US, BASE_US + 1_000_000, None, "contact", "user", None, None),
           Fact(BASE_US, BASE_US + 2_001_000, None, "contact", "user", None, None)]
    save(store, "ws_tie", tie)
    query = MetricsQuery("ws_tie", "day")
    assert fast(store, query) == compute(query, tie)
    assert fast(store, query)["total"]["resolution_seconds"]["avg"] == compute(
        query, tie)["total"]["resolution_seconds"]["avg"]
    # "CET" has summer time in zoneinfo (PostgreSQL alone would read a fixed +01:00)
    day = [Fact(BASE_US + n * DAY_US // 5, BASE_US + n * DAY_US // 5 + 61_000_000,
                "email", "contact", "user", None, None) for n in range(200)]
    save(store, "ws_cet", day)
    summer = MetricsQuery("ws_cet", "day", "CET", date(2026, 3, 25), date(2026, 4, 20))
    assert fast(store, summer) == compute(summer, day)
    assert fast(store, summer)["total"]["opened"] > 0


def test_the_cells_decline_only_when_unsure(store: Any) -> None:
    # Monrovia kept -0:44:30 until 1972: its midnights (00:44:30 UTC) fall inside
    # quarter hours, which cannot be split
    midnight_1970_03_25 = 83 * DAY_US
    early = [Fact(midnight_1970_03_25 + n * 3_600_000_000 + 2_400_000_000,
                  midnight_1970_03_25 + n * 3_600_000_000 + 2_405_000_000,
                  "email", "contact", "user", None, None) for n in range(100)]
    save(store, "ws_monrovia", early)
    query = MetricsQuery("ws_monrovia", "day", "Africa/Monrovia")
    assert fast(store, query) is None
    assert metrics(store, query) == compute(query, early)
    by_channel = MetricsQuery("ws_monrovia", "channel", "Africa/Monrovia",
                              date(1970, 3, 25), date(1970, 3, 26))
    assert fast(store, by_channel) == compute(by_channel, early)  # partial days: exact
    # a conversation in 1850: outside the range the cells are sure of
    old = [Fact(-3_787_000_000 * 1_000_000, None, None, "contact", None, None, None)]
    save(store, "ws_old", old)
    query = MetricsQuery("ws_old", "week")
    assert fast(store, query) is None
    assert metrics(store, query) == compute(query, old)


def test_a_measure_the_reference_gained_sends_the_query_to_the_reference(
        store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.projections.domain import cell_metrics
    chosen = [Fact(BASE_US, BASE_US + 61_000_000, "email", "contact", "user", None, None)]
    save(store, "ws_new_measure", chosen)
    query = MetricsQuery("ws_new_measure", "channel")
    assert fast(store, query) is not None
    monkeypatch.setattr(cell_metrics, "_REFERENCE_FIELDS",
                        [*cell_metrics._REFERENCE_FIELDS, "new_measure"])
    assert fast(store, query) is None
    assert metrics(store, query) == compute(query, chosen)


def test_a_database_without_the_cells_gets_them_at_start(postgres_database_url: str) -> None:
    schema = f"sqlm_old_{uuid.uuid4().hex[:8]}"
    url = with_query(postgres_database_url, schema=schema)
    chosen = [Fact(BASE_US + n * 3_600_000_000, BASE_US + n * 3_600_000_000 + 90_000_000,
                   "email", "contact", "user", "ana", None) for n in range(50)]
    stores = open_stores(Settings(database_url=url))
    try:
        stores.read_models.save(rows_of("ws_old_db", chosen), Position("projection:old", 1))
        with stores.read_models.datastore.transaction(commit=True) as curs:
            # as an older release left it: rows, no cells (nor their state table)
            curs.execute(f'DROP TABLE "{schema}".metric_cells_state_2')
            curs.execute(f'TRUNCATE "{schema}".metric_cells, "{schema}".metric_cells_dirty')
    finally:
        stores.close()
    stores = open_stores(Settings(database_url=url))  # the start creates and fills them
    try:
        store: Any = stores.read_models
        assert cells(store), "the cells were built at start"
        query = MetricsQuery("ws_old_db", "day", "Europe/Madrid")
        assert fast(store, query) == compute(query, chosen)
    finally:
        stores.close()


def test_copied_rows_keep_their_values_and_a_nul_in_a_text_does_not_lose_the_batch(
        store: Any) -> None:
    rows = rows_of("ws_copy", [Fact(BASE_US + n * 1_000_000, BASE_US + n * 2_000_000, "sms",
                                    "contact", "user", "ana", "t1", BASE_US, BASE_US + 5)
                               for n in range(3)])
    rows[1].summary = "bad\x00text"
    rows[2].recontact = True
    store.copy_rows(rows[:1])  # binary COPY
    store.copy_rows(rows[1:])  # the NUL: copied again with it replaced
    stored = {r.conversation_id: r for r in store.conversations("ws_copy")}
    rows[1].summary = "bad\ufffdtext"
    assert stored == {r.conversation_id: r for r in rows}
