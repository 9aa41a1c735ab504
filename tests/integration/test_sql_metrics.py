"""PostgreSQL's aggregated metrics (``sql_metrics``) equal the Python reference exactly.

Random conversations (DST days, merge / inactivity / unknown closings, empty and
missing dimensions, first responses before the first message) in random zones,
groupings and ranges: the JSON the store aggregates equals ``compute`` over the
same facts, key for key and float for float; where the fast path declines
(an average at a rounding tie, moments outside 1900..2150) the fallback does.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.composition import open_stores
from services.projections.adapters.sql_metrics import metrics
from services.projections.domain.metrics import GROUPINGS, Fact, MetricsQuery, compute, fact_window
from services.projections.domain.rows import ConversationRow
from services.settings import Settings

DAY_US = 86_400 * 1_000_000
BASE_US = 1_774_000_000 * 1_000_000  # 2026-03-20: both 2026 DST changes of Europe and the US
ZONES = ("UTC", "Europe/Madrid", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati",
         "America/Santiago", "Australia/Lord_Howe")
_IDS = itertools.count()


@pytest.fixture(scope="module")
def store(postgres_database_url: str) -> Iterator[object]:
    url = postgres_database_url + ("&" if "?" in postgres_database_url else "?") \
        + f"schema=sqlm_{uuid.uuid4().hex[:8]}"
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


def save(store: object, workspace: str, chosen: list[Fact]) -> None:
    rows = [ConversationRow(
        conversation_id=f"k{next(_IDS)}", workspace_id=workspace, contact_id=f"c{n}",
        channel=f.channel, opened_us=f.opened_us, opened_by=f.opened_by, closed_us=f.closed_us,
        closed_by=f.closed_by, assignee_id=f.assignee_id, team_id=f.team_id,
        first_message_us=f.first_message_us, first_response_us=f.first_response_us,
        recontact=f.recontact) for n, f in enumerate(chosen)]
    store.copy_rows(rows)  # type: ignore[attr-defined]


def query_for(workspace: str, zone: str, group_by: str, start: int | None,
              length: int | None) -> MetricsQuery:
    first_day = date(2026, 3, 20)
    low = None if start is None else first_day + timedelta(days=start)
    high = None if length is None else (low or first_day) + timedelta(days=length)
    return MetricsQuery(workspace, group_by, zone, low, high)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(facts(), max_size=60), st.sampled_from(ZONES),
       st.none() | st.integers(0, 250), st.none() | st.integers(0, 60))
def test_aggregated_metrics_equal_the_python_reference(
        store: object, chosen: list[Fact], zone: str, start: int | None,
        length: int | None) -> None:
    workspace = f"ws{next(_IDS)}"
    save(store, workspace, chosen)
    for group_by in GROUPINGS:
        query = query_for(workspace, zone, group_by, start, length)
        assert metrics(store, query) == compute(query, chosen), group_by


def test_the_fast_path_answers_and_declines_only_when_unsure(store: object) -> None:
    day = 86_400 * 1_000_000
    chosen = [Fact(BASE_US + n * day // 7, BASE_US + n * day // 7 + 1_000_001 + n * 977,
                   "whatsapp", "contact", "user", "ana", None, BASE_US + n * day // 7,
                   BASE_US + n * day // 7 + 30_000_123, n % 3 == 0) for n in range(500)]
    save(store, "ws_fast", chosen)
    for group_by in GROUPINGS:
        query = MetricsQuery("ws_fast", group_by, "Europe/Madrid", date(2026, 3, 22),
                             date(2026, 4, 30))
        found = store.aggregate_metrics(query, fact_window(query))  # type: ignore[attr-defined]
        assert found is not None, group_by
        assert found == compute(query, chosen)
        assert found["total"]["closed"] > 0
    # two resolutions of 1 s and 2.001 s: the average 1.5005 s is a rounding tie
    tie = [Fact(BASE_US, BASE_US + 1_000_000, None, "contact", "user", None, None),
           Fact(BASE_US, BASE_US + 2_001_000, None, "contact", "user", None, None)]
    save(store, "ws_tie", tie)
    query = MetricsQuery("ws_tie", "day")
    assert store.aggregate_metrics(query, None) is None  # type: ignore[attr-defined]
    assert metrics(store, query) == compute(query, tie)
    # "CET" is a fixed +01:00 abbreviation to PostgreSQL, a zone with summer time to zoneinfo
    summer = MetricsQuery("ws_fast", "day", "CET", date(2026, 4, 1), date(2026, 5, 20))
    assert store.aggregate_metrics(summer, fact_window(summer)) is None  # type: ignore[attr-defined]
    assert metrics(store, summer) == compute(summer, chosen)
    assert metrics(store, summer)["total"]["opened"] > 0
    # a conversation in 1850: outside the range the fast path is sure of
    old = [Fact(-3_787_000_000 * 1_000_000, None, None, "contact", None, None, None)]
    save(store, "ws_old", old)
    query = MetricsQuery("ws_old", "week")
    assert store.aggregate_metrics(query, None) is None  # type: ignore[attr-defined]
    assert metrics(store, query) == compute(query, old)


def test_a_measure_the_reference_gained_sends_the_query_to_the_reference(
        store: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.projections.adapters import sql_metrics
    chosen = [Fact(BASE_US, BASE_US + 61_000_000, "email", "contact", "user", None, None)]
    save(store, "ws_new_measure", chosen)
    query = MetricsQuery("ws_new_measure", "channel")
    assert store.aggregate_metrics(query, None) is not None  # type: ignore[attr-defined]
    monkeypatch.setattr(sql_metrics, "_REFERENCE_FIELDS",
                        [*sql_metrics._REFERENCE_FIELDS, "new_measure"])
    assert store.aggregate_metrics(query, None) is None  # type: ignore[attr-defined]
    assert metrics(store, query) == compute(query, chosen)
