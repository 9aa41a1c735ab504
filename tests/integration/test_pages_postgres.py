"""The Dashboard and drill-down answers counted in PostgreSQL equal the Python reference.

On random conversations (DST days, empty and missing dimensions, merge and
inactivity closings): the dashboard summary built with the store's SQL
(``open_overview``, ``hourly_counts``, the metric cells) equals the one the Python
functions build from the same rows, and every drill-down page
(``GET /conversations`` with a bucket, filters, offset and limit) selected by SQL
equals the row-by-row selection, with the same total.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from conftest import fresh_schema_url
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from services.composition import open_stores
from services.conversation.application.ports import Position
from services.http.browse import bucket_of, page_of, row_filters, select, sql_condition
from services.http.dashboard import summary
from services.projections.domain.rows import ConversationRow
from services.settings import Settings

DAY_US = 86_400 * 1_000_000
BASE_US = 1_774_000_000 * 1_000_000  # 2026-03-20
ZONES = ("UTC", "Europe/Madrid", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe")
_IDS = itertools.count()


@pytest.fixture(scope="module")
def store(postgres_database_url: str) -> Iterator[Any]:
    with fresh_schema_url(postgres_database_url, "pages") as url:
        stores = open_stores(Settings(database_url=url))
        yield stores.read_models
        stores.close()


class PythonOnly:
    """The store with only the methods the Python reference path uses."""

    def __init__(self, store: Any) -> None:
        self.conversations = store.conversations
        self.facts = store.facts


@st.composite
def rows(draw: st.DrawFn, workspace: str) -> ConversationRow:
    opened = BASE_US + draw(st.integers(0, 20 * DAY_US))
    closed = draw(st.none() | st.integers(0, 3 * DAY_US).map(lambda d: opened + d))
    activity = draw(st.sampled_from((0, opened, opened + 5_000_000)))
    return ConversationRow(
        conversation_id=f"p{next(_IDS)}", workspace_id=workspace,
        contact_id=draw(st.sampled_from(("a", "b", "c", "d"))), channel=draw(
            st.sampled_from(("whatsapp", "email", "", None))),
        opened_us=opened, opened_by=draw(st.sampled_from(("contact", "user"))),
        closed_us=closed, closed_by=None if closed is None else draw(
            st.sampled_from(("user", "merge", "inactivity", None))),
        assignee_id=draw(st.sampled_from(("ana", "bob", "", None))),
        team_id=draw(st.sampled_from(("support", None))), last_activity_us=activity)


def params() -> st.SearchStrategy[dict[str, Any]]:
    days = st.integers(-2, 22).map(lambda n: (date(2026, 3, 20) + timedelta(days=n)).isoformat())
    bucket = st.sampled_from((
        {}, {"group_by": "day"}, {"group_by": "week"}, {"group_by": "month"},
        {"group_by": "channel", "key": "none"}, {"group_by": "assignee", "key": "unassigned"},
        {"group_by": "closed_by", "key": "merge"}, {"group_by": "opened_by", "key": "user"}))
    optional: dict[str, st.SearchStrategy[Any]] = {
        "measure": st.sampled_from(("opened", "closed", "resolved")),
        "from": days, "to": days, "tz": st.sampled_from(ZONES),
        "status": st.sampled_from(("open", "closed")), "channel": st.sampled_from(("", "none")),
        "assignee": st.sampled_from(("ana", "unassigned")), "contact": st.just("b"),
        "offset": st.sampled_from(("0", "3")), "limit": st.sampled_from(("1", "5")),
        "bucket": bucket, "day": days}
    return st.fixed_dictionaries({}, optional=optional)


def to_query(drawn: dict[str, Any]) -> MultiDict[str]:
    bucket = drawn.pop("bucket", {})
    day = drawn.pop("day", "2026-03-25")
    query = dict(drawn)
    if "measure" in query and bucket:
        query["group_by"] = bucket["group_by"]
        key = bucket.get("key")
        if key is None:
            moment = date.fromisoformat(day)
            key = {"day": day, "month": day[:7],
                   "week": f"{moment.isocalendar()[0]}-W{moment.isocalendar()[1]:02d}"}[
                       bucket["group_by"]]
        query["key"] = key
    return MultiDict(query)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_pages_and_the_dashboard_from_sql_equal_the_python_reference(
        store: Any, data: st.DataObject) -> None:
    workspace = f"w{next(_IDS)}"
    store.save(data.draw(st.lists(rows(workspace), max_size=40)),
               Position(f"projection:{workspace}", 1))
    now = datetime(2026, 3, 20, tzinfo=UTC) + timedelta(
        hours=data.draw(st.integers(0, 24 * 20)))
    for tz in ZONES:
        reference = summary(PythonOnly(store), workspace, tz, now)  # type: ignore[arg-type]
        assert summary(store, workspace, tz, now) == reference
    for _ in range(6):
        query = to_query(data.draw(params()))
        bucket = bucket_of(query)
        offset, limit = page_of(query)
        condition = sql_condition(query, bucket, query.get("status"))
        assert condition is not None
        total, page = store.conversation_page(workspace, *condition, offset, limit)
        between = bucket.window() if bucket is not None else None
        expected = select(store.conversations(workspace, query.get("contact"),
                                              query.get("status"), between),
                          row_filters(query))
        assert total == len(expected), dict(query)
        end = offset + limit if limit is not None else None
        assert [row.public() for row in page] == expected[offset:end], dict(query)
