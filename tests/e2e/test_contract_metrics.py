"""Acceptance of the metrics of CONTRACT §3 over ``GET /v1/workspaces/{ws}/metrics``,
with every value worked out by hand from the stories of ``contract_scenarios.py``."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Contract

pytestmark = pytest.mark.e2e

NULL = {"count": 0, "avg": None, "p50": None, "p90": None, "min": None, "max": None}
STAT_KEYS = ["count", "avg", "p50", "p90", "min", "max"]
TOP_KEYS = ["workspace_id", "group_by", "tz", "from", "to", "rows", "total"]


def stats(count: int, *avg_p50_p90_min_max: float) -> dict[str, Any]:
    return dict(zip(STAT_KEYS, [count, *avg_p50_p90_min_max], strict=True))


def one(value: float) -> dict[str, Any]:
    return stats(1, value, value, value, value, value)


def row(key: str | None, opened: int | None, closed: int,
        resolution: dict[str, Any] = NULL) -> tuple[Any, ...]:
    return (key, opened, closed, resolution)


def rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def shape(line: dict[str, Any]) -> tuple[Any, ...]:
    """The §3 part of a row (§6 may add fields beside it)."""
    resolution = line["resolution_seconds"]
    assert list(resolution)[:6] == STAT_KEYS
    return (line["key"], line["opened"], line["closed"],
            {k: rounded(resolution[k]) for k in STAT_KEYS})


def rows_of(contract: Contract, ws: str, **params: str) -> list[tuple[Any, ...]]:
    return [shape(r) for r in contract.metrics(ws, **params)["rows"]]


def total_of(contract: Contract, ws: str, **params: str) -> tuple[Any, ...]:
    return shape(contract.metrics(ws, **params)["total"])


def test_metrics_json_has_the_shape_of_the_contract_example(contract: Contract) -> None:
    body = contract.metrics("m-example")
    assert list(body) == TOP_KEYS
    example = stats(2, 90.0, 90.0, 114.0, 60.0, 120.0)
    assert {k: body[k] for k in TOP_KEYS[:5]} == {
        "workspace_id": "m-example", "group_by": "day", "tz": "UTC", "from": None, "to": None}
    assert [shape(r) for r in body["rows"]] == [row("2026-11-24", 3, 2, example)]
    assert shape(body["total"]) == row(None, 3, 2, example)


def test_percentiles_interpolate_linearly_between_closest_ranks(contract: Contract) -> None:
    # dialogflow closed 60, 120, 180, 600: p50 = 150, p90 = 180 + 0.7 * 420 = 474
    assert rows_of(contract, "l-df", group_by="closed_by") == [
        row("dialogflow", None, 4, stats(4, 240.0, 150.0, 474.0, 60.0, 600.0))]
    assert total_of(contract, "l-df", group_by="closed_by") == row(
        None, 7, 4, stats(4, 240.0, 150.0, 474.0, 60.0, 600.0))


def test_resolution_is_never_negative(contract: Contract) -> None:
    assert rows_of(contract, "l-close") == [
        row("2026-11-24", 3, 2, stats(2, 150.0, 150.0, 270.0, 0.0, 300.0))]


def test_day_buckets_follow_the_zone_on_dst_days(contract: Contract) -> None:
    assert rows_of(contract, "m-dst", tz="Europe/Berlin") == [
        row("2026-03-28", 1, 0), row("2026-03-29", 2, 1, one(31.0)), row("2026-03-30", 1, 0),
        row("2026-10-24", 1, 0), row("2026-10-25", 2, 0), row("2026-10-26", 1, 0)]
    assert rows_of(contract, "m-dst") == [
        row("2026-03-28", 2, 1, one(31.0)), row("2026-03-29", 2, 0),
        row("2026-10-24", 2, 0), row("2026-10-25", 2, 0)]


def test_count_zero_gives_null_statistics(contract: Contract) -> None:
    assert total_of(contract, "m-dst", tz="Europe/Berlin", to="2026-03-28") == row(None, 1, 0)


def test_from_to_are_inclusive_dates_in_the_zone_on_a_dst_day(contract: Contract) -> None:
    body = contract.metrics("m-dst", tz="Europe/Berlin", **{"from": "2026-03-29",
                                                           "to": "2026-03-29"})
    assert (body["tz"], body["from"], body["to"]) == ("Europe/Berlin", "2026-03-29",
                                                      "2026-03-29")
    assert [shape(r) for r in body["rows"]] == [row("2026-03-29", 2, 1, one(31.0))]
    assert shape(body["total"]) == row(None, 2, 1, one(31.0))


def test_from_to_filter_opened_by_opened_at_and_closed_by_closed_at(contract: Contract) -> None:
    ny = {"tz": "America/New_York"}
    assert rows_of(contract, "m-range", **ny) == [
        row("2026-11-23", 1, 0), row("2026-11-24", 2, 1, one(31.0)),
        row("2026-11-25", 0, 2, stats(2, 43205.5, 43205.5, 77761.1, 11.0, 86400.0))]
    day = {"from": "2026-11-24", "to": "2026-11-24"}
    assert rows_of(contract, "m-range", **ny, **day) == [row("2026-11-24", 2, 1, one(31.0))]
    assert total_of(contract, "m-range", **ny, **day) == row(None, 2, 1, one(31.0))
    assert rows_of(contract, "m-range", **ny, **{"from": "2026-11-25"}) == [
        row("2026-11-25", 0, 2, stats(2, 43205.5, 43205.5, 77761.1, 11.0, 86400.0))]
    assert total_of(contract, "m-range", **ny, to="2026-11-23") == row(None, 1, 0)


def test_week_keys_are_iso_weeks_around_new_year(contract: Contract) -> None:
    assert rows_of(contract, "m-week", group_by="week") == [
        row("2025-W52", 1, 0), row("2026-W01", 2, 0), row("2026-W53", 2, 0),
        row("2027-W01", 1, 0)]
    assert rows_of(contract, "m-week", group_by="week", tz="Europe/Berlin") == [
        row("2025-W52", 1, 0), row("2026-W01", 2, 0), row("2026-W53", 1, 0),
        row("2027-W01", 2, 0)]


def test_month_keys(contract: Contract) -> None:
    assert rows_of(contract, "m-week", group_by="month") == [
        row("2025-12", 2, 0), row("2026-01", 1, 0), row("2026-12", 1, 0), row("2027-01", 2, 0)]


def test_channel_grouping_counts_opened_and_names_none(contract: Contract) -> None:
    assert rows_of(contract, "m-dims", group_by="channel") == [
        row("email", 2, 1, one(60.0)), row("facebook", 1, 0), row("none", 1, 0),
        row("sms", 2, 1, one(600.0))]
    assert total_of(contract, "m-dims", group_by="channel") == row(
        None, 6, 2, stats(2, 330.0, 330.0, 546.0, 60.0, 600.0))


def test_opened_by_grouping(contract: Contract) -> None:
    assert rows_of(contract, "m-dims", group_by="opened_by") == [
        row("automation", 1, 1, one(60.0)), row("contact", 3, 1, one(600.0)),
        row("user", 1, 0), row("welcome", 1, 0)]


def test_closed_by_grouping_has_null_opened_and_total_counts_opened(
        contract: Contract) -> None:
    assert rows_of(contract, "m-dims", group_by="closed_by") == [
        row("automation", None, 1, one(60.0)), row("user", None, 1, one(600.0))]
    assert total_of(contract, "m-dims", group_by="closed_by") == row(
        None, 6, 2, stats(2, 330.0, 330.0, 546.0, 60.0, 600.0))


def test_assignee_grouping_uses_the_assignee_at_close(contract: Contract) -> None:
    assert rows_of(contract, "l-assign", group_by="assignee") == [
        row("bob", None, 1, one(180.0)), row("erin", None, 1, one(300.0)),
        row("unassigned", None, 1, one(240.0))]
    assert total_of(contract, "l-assign", group_by="assignee") == row(
        None, 4, 3, stats(3, 240.0, 240.0, 288.0, 180.0, 300.0))


def test_team_grouping_uses_the_team_at_close(contract: Contract) -> None:
    assert rows_of(contract, "l-assign", group_by="team") == [
        row("t1", None, 1, one(180.0)),
        row("unassigned", None, 2, stats(2, 270.0, 270.0, 294.0, 240.0, 300.0))]
    assert total_of(contract, "l-assign", group_by="team")[:3] == (None, 4, 3)


def test_merge_closings_count_as_closed_but_not_in_resolution(contract: Contract) -> None:
    assert rows_of(contract, "l-merge", group_by="closed_by") == [
        row("merge", None, 2), row("user", None, 1, one(300.0))]
    assert rows_of(contract, "l-merge") == [row("2026-11-24", 4, 3, one(300.0))]


def test_unknown_workspace_has_no_rows_and_a_zero_total(contract: Contract) -> None:
    body = contract.server.get_json("/v1/workspaces/h-other/metrics", "an-h-other")
    assert body["rows"] == [] and shape(body["total"]) == row(None, 0, 0)
