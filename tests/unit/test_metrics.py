"""CONTRACT §3: metrics computed from hand-built conversation facts."""

from __future__ import annotations

import math
import random
from datetime import date, datetime
from typing import Any

import pytest

from services.projections.domain.durations import (
    DURATION_DECIMALS,
    duration_stats,
    exact_stats,
    percentile,
    seconds,
)
from services.projections.domain.metrics import (
    GROUPINGS,
    Fact,
    MetricsQuery,
    compute,
    to_us,
)

NULL_STATS = {"count": 0, "avg": None, "p50": None, "p90": None, "min": None, "max": None}
NULL_LEVELS = {"first_response_seconds": NULL_STATS,
               "first_response_business_seconds": NULL_STATS,
               "resolution_business_seconds": NULL_STATS, "recontacts": 0}


def us(text: str) -> int:
    return to_us(datetime.fromisoformat(text.replace("Z", "+00:00")))


def fact(opened: str, closed: str | None = None, *, channel: str | None = "whatsapp",
         opened_by: str = "contact", closed_by: str | None = None,
         assignee: str | None = None, team: str | None = None) -> Fact:
    if closed is not None and closed_by is None:
        closed_by = "user"
    return Fact(us(opened), us(closed) if closed else None, channel, opened_by,
                closed_by if closed else None, assignee, team)


def metrics(facts: list[Fact], group_by: str = "day", tz: str = "UTC", *,
            date_from: str | None = None, date_to: str | None = None,
            workspace: str = "ws1") -> dict[str, Any]:
    query = MetricsQuery(workspace, group_by, tz,
                         date.fromisoformat(date_from) if date_from else None,
                         date.fromisoformat(date_to) if date_to else None)
    return compute(query, facts)


def keyed(result: dict[str, Any]) -> dict[str, tuple[Any, int]]:
    """key -> (opened, closed) of every row."""
    return {row["key"]: (row["opened"], row["closed"]) for row in result["rows"]}


def reference_percentile(values: list[float], q: float) -> float:
    """numpy.percentile(values, 100*q) with its default 'linear' method."""
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    lo, hi = math.floor(h), math.ceil(h)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


# ------------------------------------------------------------- the example
def test_the_contract_example() -> None:
    facts = [fact("2026-11-24T09:00:00Z", "2026-11-24T09:01:00Z"),
             fact("2026-11-24T10:00:00Z", "2026-11-24T10:02:00Z"),
             fact("2026-11-24T11:00:00Z")]
    stats = {"count": 2, "avg": 90.0, "p50": 90.0, "p90": 114.0, "min": 60.0, "max": 120.0}
    levels = {"first_response_seconds": NULL_STATS,
              "first_response_business_seconds": NULL_STATS,
              "resolution_business_seconds": stats, "recontacts": 0}
    assert metrics(facts) == {
        "workspace_id": "ws1", "group_by": "day", "tz": "UTC", "from": None, "to": None,
        "rows": [{"key": "2026-11-24", "opened": 3, "closed": 2, "resolution_seconds": stats,
                  **levels}],
        "total": {"key": None, "opened": 3, "closed": 2, "resolution_seconds": stats,
                  **levels},
    }


def test_json_echoes_the_query() -> None:
    result = metrics([], "week", "Europe/Berlin", date_from="2026-11-01",
                     date_to="2026-11-30", workspace="team-7")
    assert list(result) == ["workspace_id", "group_by", "tz", "from", "to", "rows", "total"]
    assert (result["workspace_id"], result["group_by"], result["tz"], result["from"],
            result["to"]) == ("team-7", "week", "Europe/Berlin", "2026-11-01", "2026-11-30")


@pytest.mark.parametrize("group_by", GROUPINGS)
def test_no_conversations_gives_no_rows_and_a_zero_total(group_by: str) -> None:
    result = metrics([], group_by)
    assert result["rows"] == []
    assert result["total"] == {"key": None, "opened": 0, "closed": 0,
                               "resolution_seconds": NULL_STATS, **NULL_LEVELS}


def test_groupings_are_the_contracts() -> None:
    assert set(GROUPINGS) == {"day", "week", "month", "channel", "opened_by", "closed_by",
                              "assignee", "team"}


# -------------------------------------------------------------- statistics
@pytest.mark.parametrize(("values", "p50", "p90"), [
    ([10.0], 10.0, 10.0),
    ([0.0, 100.0], 50.0, 90.0),
    ([60.0, 120.0], 90.0, 114.0),
    ([1.0, 2.0, 3.0, 4.0], 2.5, 3.7),
    ([5.0, 1.0, 3.0], 3.0, 4.6),
    ([7.0] * 5, 7.0, 7.0),
    ([float(n) for n in range(1, 11)], 5.5, 9.1),
])
def test_percentiles_interpolate_linearly(values: list[float], p50: float, p90: float) -> None:
    stats = exact_stats(values)
    assert stats["p50"] == pytest.approx(p50)
    assert stats["p90"] == pytest.approx(p90)
    assert stats["count"] == len(values)
    assert stats["min"] == min(values) and stats["max"] == max(values)
    assert stats["avg"] == pytest.approx(sum(values) / len(values))


def test_percentiles_match_the_numpy_reference_on_random_samples() -> None:
    rng = random.Random(20261124)
    for _ in range(500):
        values = [rng.choice([rng.uniform(0, 10_000), float(rng.randint(0, 50))])
                  for _ in range(rng.randint(1, 40))]
        for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0):
            assert percentile(sorted(values), q) == pytest.approx(
                reference_percentile(values, q), rel=1e-12, abs=1e-9)
        stats = exact_stats(values)
        assert stats["p50"] == pytest.approx(reference_percentile(values, 0.5), rel=1e-12)
        assert stats["p90"] == pytest.approx(reference_percentile(values, 0.9), rel=1e-12)
        shown = duration_stats(values)
        for key in ("avg", "p50", "p90", "min", "max"):
            assert shown[key] == round(stats[key], DURATION_DECIMALS)


def test_shown_durations_have_at_most_three_decimals() -> None:
    # 840.0000000000002 is what the mean of these three gives unrounded
    values = [839.9, 840.1, 840.0000000000006]
    assert exact_stats(values)["avg"] != 840.0
    assert duration_stats(values) == {"count": 3, "avg": 840.0, "p50": 840.0,
                                      "p90": 840.08, "min": 839.9, "max": 840.1}
    assert seconds(0.0004) == 0.0 and str(seconds(-0.0001)) == "0.0"
    assert seconds(1.2345678) == 1.235 and seconds(None) is None
    facts = [fact("2026-11-24T10:00:00Z", "2026-11-24T10:00:00.0004Z"),
             fact("2026-11-24T10:00:00Z", "2026-11-24T10:00:01.1116Z"),
             fact("2026-11-24T10:00:00Z", "2026-11-24T10:00:02.2229Z")]
    stats = metrics(facts)["total"]["resolution_seconds"]
    assert stats == {"count": 3, "avg": 1.112, "p50": 1.112, "p90": 2.001, "min": 0.0,
                     "max": 2.223}


def test_empty_statistics_are_all_null() -> None:
    assert duration_stats([]) == NULL_STATS


def test_statistics_are_floats() -> None:
    facts = [fact("2026-11-24T10:00:00Z", "2026-11-24T10:00:30Z")]
    stats = metrics(facts)["total"]["resolution_seconds"]
    assert all(isinstance(stats[k], float) for k in ("avg", "p50", "p90", "min", "max"))
    assert stats["avg"] == 30.0


def test_resolution_has_sub_second_precision_and_is_never_negative() -> None:
    facts = [fact("2026-11-24T10:00:00.250Z", "2026-11-24T10:00:01Z"),
             fact("2026-11-24T12:00:00Z", "2026-11-24T11:00:00Z")]
    stats = metrics(facts)["total"]["resolution_seconds"]
    assert (stats["min"], stats["max"], stats["count"]) == (0.0, 0.75, 2)


# ---------------------------------------------------------------- merges
def test_merge_closures_count_as_closed_but_not_in_resolution() -> None:
    facts = [fact("2026-11-24T10:00:00Z", "2026-11-24T10:10:00Z", closed_by="merge"),
             fact("2026-11-24T10:00:00Z", "2026-11-24T10:01:00Z", closed_by="user")]
    total = metrics(facts)["total"]
    assert total["closed"] == 2
    assert total["resolution_seconds"]["count"] == 1
    assert total["resolution_seconds"]["max"] == 60.0


def test_a_bucket_with_only_merge_closures_has_null_statistics() -> None:
    facts = [fact("2026-11-23T10:00:00Z", "2026-11-24T10:10:00Z", closed_by="merge")]
    rows = metrics(facts)["rows"]
    assert rows == [
        {"key": "2026-11-23", "opened": 1, "closed": 0, "resolution_seconds": NULL_STATS,
         **NULL_LEVELS},
        {"key": "2026-11-24", "opened": 0, "closed": 1, "resolution_seconds": NULL_STATS,
         **NULL_LEVELS},
    ]
    by_closer = metrics(facts, "closed_by")["rows"]
    assert by_closer == [{"key": "merge", "opened": None, "closed": 1,
                          "resolution_seconds": NULL_STATS, **NULL_LEVELS,
                          "recontacts": None}]


# --------------------------------------------------------------- time keys
def test_day_rows_only_for_non_zero_days_sorted() -> None:
    facts = [fact("2026-11-26T10:00:00Z"),
             fact("2026-11-20T10:00:00Z", "2026-11-24T10:00:00Z"),
             fact("2026-11-24T09:00:00Z", "2026-11-24T09:30:00Z")]
    assert keyed(metrics(facts)) == {"2026-11-20": (1, 0), "2026-11-24": (1, 2),
                                     "2026-11-26": (1, 0)}
    assert [r["key"] for r in metrics(facts)["rows"]] == ["2026-11-20", "2026-11-24",
                                                          "2026-11-26"]


def test_opened_and_closed_fall_in_their_own_buckets() -> None:
    facts = [fact("2026-11-24T23:59:59Z", "2026-11-25T00:00:00Z")]
    result = metrics(facts)
    assert result["rows"][0]["resolution_seconds"] == NULL_STATS
    assert result["rows"][1]["resolution_seconds"]["avg"] == 1.0


@pytest.mark.parametrize(("moment", "week"), [
    ("2026-12-31T12:00:00Z", "2026-W53"),
    ("2027-01-01T12:00:00Z", "2026-W53"),
    ("2027-01-03T23:59:59Z", "2026-W53"),
    ("2027-01-04T00:00:00Z", "2027-W01"),
    ("2025-12-29T00:00:00Z", "2026-W01"),
    ("2025-12-28T23:59:59Z", "2025-W52"),
    ("2026-02-02T10:00:00Z", "2026-W06"),
    ("2020-12-31T10:00:00Z", "2020-W53"),
    ("2021-01-01T10:00:00Z", "2020-W53"),
])
def test_iso_week_keys(moment: str, week: str) -> None:
    assert keyed(metrics([fact(moment, moment)], "week")) == {week: (1, 1)}


@pytest.mark.parametrize(("moment", "month"), [
    ("2026-01-31T23:59:59Z", "2026-01"), ("2026-02-01T00:00:00Z", "2026-02"),
    ("2026-12-31T10:00:00Z", "2026-12"), ("2027-01-01T00:00:00Z", "2027-01"),
])
def test_month_keys(moment: str, month: str) -> None:
    assert keyed(metrics([fact(moment)], "month")) == {month: (1, 0)}


def test_week_and_month_sort_by_key() -> None:
    facts = [fact("2027-01-04T10:00:00Z"), fact("2026-12-31T10:00:00Z"),
             fact("2026-03-01T10:00:00Z")]
    assert [r["key"] for r in metrics(facts, "week")["rows"]] == [
        "2026-W09", "2026-W53", "2027-W01"]
    assert [r["key"] for r in metrics(facts, "month")["rows"]] == [
        "2026-03", "2026-12", "2027-01"]


# -------------------------------------------------------------- time zones
@pytest.mark.parametrize(("tz", "moment", "day"), [
    # America/New_York springs forward on 2026-03-08 (a 23-hour day, 05:00Z..04:00Z)
    ("America/New_York", "2026-03-08T04:59:59Z", "2026-03-07"),
    ("America/New_York", "2026-03-08T05:00:00Z", "2026-03-08"),
    ("America/New_York", "2026-03-08T06:59:59Z", "2026-03-08"),
    ("America/New_York", "2026-03-08T07:00:00Z", "2026-03-08"),
    ("America/New_York", "2026-03-09T03:59:59.999999Z", "2026-03-08"),
    ("America/New_York", "2026-03-09T04:00:00Z", "2026-03-09"),
    # Europe/Berlin falls back on 2026-10-25 (a 25-hour day, 22:00Z..23:00Z)
    ("Europe/Berlin", "2026-10-24T21:59:59Z", "2026-10-24"),
    ("Europe/Berlin", "2026-10-24T22:00:00Z", "2026-10-25"),
    ("Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-25"),
    ("Europe/Berlin", "2026-10-25T01:30:00Z", "2026-10-25"),
    ("Europe/Berlin", "2026-10-25T22:59:59.999999Z", "2026-10-25"),
    ("Europe/Berlin", "2026-10-25T23:00:00Z", "2026-10-26"),
    ("Asia/Kolkata", "2026-11-24T18:29:59Z", "2026-11-24"),
    ("Asia/Kolkata", "2026-11-24T18:30:00Z", "2026-11-25"),
    ("Asia/Kathmandu", "2026-11-24T18:14:59.999999Z", "2026-11-24"),
    ("Asia/Kathmandu", "2026-11-24T18:15:00Z", "2026-11-25"),
    ("America/Los_Angeles", "2026-11-25T07:59:59Z", "2026-11-24"),
    ("America/Los_Angeles", "2026-11-25T08:00:00Z", "2026-11-25"),
    ("Pacific/Kiritimati", "2026-11-24T09:59:59Z", "2026-11-24"),
    ("Pacific/Kiritimati", "2026-11-24T10:00:00Z", "2026-11-25"),
    ("UTC", "2026-11-24T23:59:59.999999Z", "2026-11-24"),
    ("UTC", "2026-11-25T00:00:00Z", "2026-11-25"),
])
def test_day_buckets_in_a_zone(tz: str, moment: str, day: str) -> None:
    assert keyed(metrics([fact(moment, moment)], "day", tz)) == {day: (1, 1)}


def test_a_dst_day_collects_its_23_or_25_hours() -> None:
    ny = [fact(f"2026-03-0{d}T{h:02d}:00:00Z") for d in (8, 9) for h in range(24)]
    assert keyed(metrics(ny, "day", "America/New_York"))["2026-03-08"] == (23, 0)
    berlin = [fact(f"2026-10-{d}T{h:02d}:00:00Z") for d in (24, 25) for h in range(24)]
    assert keyed(metrics(berlin, "day", "Europe/Berlin"))["2026-10-25"] == (25, 0)


def test_week_and_month_keys_use_the_zone() -> None:
    moment = "2026-12-31T23:30:00Z"  # already 2027-01-01 in Berlin
    assert keyed(metrics([fact(moment)], "month", "Europe/Berlin")) == {"2027-01": (1, 0)}
    assert keyed(metrics([fact(moment)], "month")) == {"2026-12": (1, 0)}
    monday = "2027-01-03T23:30:00Z"  # Monday 2027-01-04 in Berlin
    assert keyed(metrics([fact(monday)], "week", "Europe/Berlin")) == {"2027-W01": (1, 0)}
    assert keyed(metrics([fact(monday)], "week")) == {"2026-W53": (1, 0)}


# ------------------------------------------------------------- from / to
def test_from_and_to_are_inclusive_calendar_dates() -> None:
    facts = [fact("2026-11-23T23:59:59Z"), fact("2026-11-24T00:00:00Z"),
             fact("2026-11-25T23:59:59Z"), fact("2026-11-26T00:00:00Z")]
    result = metrics(facts, date_from="2026-11-24", date_to="2026-11-25")
    assert keyed(result) == {"2026-11-24": (1, 0), "2026-11-25": (1, 0)}
    assert result["total"]["opened"] == 2
    assert keyed(metrics(facts, date_from="2026-11-24", date_to="2026-11-24")) == {
        "2026-11-24": (1, 0)}


def test_from_only_and_to_only() -> None:
    facts = [fact("2026-11-20T10:00:00Z"), fact("2026-11-24T10:00:00Z"),
             fact("2026-11-28T10:00:00Z")]
    assert set(keyed(metrics(facts, date_from="2026-11-24"))) == {"2026-11-24", "2026-11-28"}
    assert set(keyed(metrics(facts, date_to="2026-11-24"))) == {"2026-11-20", "2026-11-24"}
    assert metrics(facts, date_from="2026-11-24")["to"] is None
    assert metrics(facts, date_to="2026-11-24")["from"] is None


def test_range_filters_opened_by_opened_at_and_closed_by_closed_at() -> None:
    facts = [fact("2026-11-20T10:00:00Z", "2026-11-24T10:00:00Z"),  # opened before
             fact("2026-11-24T10:00:00Z", "2026-11-28T10:00:00Z"),  # closed after
             fact("2026-11-24T11:00:00Z", "2026-11-24T11:00:10Z")]
    result = metrics(facts, date_from="2026-11-24", date_to="2026-11-24")
    assert keyed(result) == {"2026-11-24": (2, 2)}
    total = result["total"]
    assert (total["opened"], total["closed"]) == (2, 2)
    assert total["resolution_seconds"]["max"] == 4 * 86_400.0
    assert total["resolution_seconds"]["min"] == 10.0


def test_range_dates_are_in_the_query_zone() -> None:
    facts = [fact("2026-11-24T20:00:00Z")]  # 2026-11-25 in Kolkata
    assert metrics(facts, tz="Asia/Kolkata", date_from="2026-11-25")["total"]["opened"] == 1
    assert metrics(facts, tz="Asia/Kolkata", date_to="2026-11-24")["total"]["opened"] == 0
    assert metrics(facts, date_to="2026-11-24")["total"]["opened"] == 1


def test_range_applies_to_dimension_groupings() -> None:
    facts = [fact("2026-11-20T10:00:00Z", "2026-11-20T10:01:00Z", channel="sms"),
             fact("2026-11-24T10:00:00Z", "2026-11-24T10:01:00Z", channel="line")]
    result = metrics(facts, "channel", date_from="2026-11-24")
    assert keyed(result) == {"line": (1, 1)}
    assert result["total"]["closed"] == 1


def test_from_after_to_is_empty() -> None:
    result = metrics([fact("2026-11-24T10:00:00Z")], date_from="2026-11-25",
                     date_to="2026-11-23")
    assert result["rows"] == [] and result["total"]["opened"] == 0


# ------------------------------------------------------------ dimensions
DIMENSION_FACTS = [
    fact("2026-11-24T10:00:00Z", "2026-11-24T10:01:00Z", channel="sms", opened_by="contact",
         closed_by="user", assignee="ann", team="t1"),
    fact("2026-11-24T11:00:00Z", "2026-11-24T11:03:00Z", channel=None, opened_by="user",
         closed_by="automation", assignee=None, team=None),
    fact("2026-11-24T12:00:00Z", "2026-11-24T12:05:00Z", channel="sms", opened_by="welcome",
         closed_by="merge", assignee="bob", team="t2"),
    fact("2026-11-24T13:00:00Z", channel="line", opened_by="dialogflow", assignee="ann",
         team="t1"),
]


@pytest.mark.parametrize(("group_by", "expected"), [
    ("channel", {"line": (1, 0), "none": (1, 1), "sms": (2, 2)}),
    ("opened_by", {"contact": (1, 1), "dialogflow": (1, 0), "user": (1, 1),
                   "welcome": (1, 1)}),
    ("closed_by", {"automation": (None, 1), "merge": (None, 1), "user": (None, 1)}),
    ("assignee", {"ann": (None, 1), "bob": (None, 1), "unassigned": (None, 1)}),
    ("team", {"t1": (None, 1), "t2": (None, 1), "unassigned": (None, 1)}),
])
def test_dimension_groupings(group_by: str, expected: dict[str, tuple[Any, int]]) -> None:
    result = metrics(DIMENSION_FACTS, group_by)
    assert keyed(result) == expected
    assert [r["key"] for r in result["rows"]] == sorted(expected)
    total = result["total"]
    assert (total["key"], total["opened"], total["closed"]) == (None, 4, 3)
    assert total["resolution_seconds"]["count"] == 2
    assert total["resolution_seconds"]["avg"] == 120.0


def test_dimension_rows_carry_their_own_statistics() -> None:
    rows = {r["key"]: r["resolution_seconds"] for r in metrics(DIMENSION_FACTS, "channel")["rows"]}
    assert rows["sms"]["count"] == 1 and rows["sms"]["avg"] == 60.0
    assert rows["none"]["count"] == 1 and rows["none"]["avg"] == 180.0
    assert rows["line"] == NULL_STATS


def test_the_total_is_the_same_whatever_the_grouping() -> None:
    """CONTRACT §3: ``total`` covers the whole filtered range; in particular the
    first responses of open conversations count in it also when grouping by
    ``closed_by``, whose rows hold closed conversations only (§6.6)."""
    responded = [Fact(us("2026-11-24T10:00:00Z"), closed, "sms", "contact",
                      "user" if closed else None, None, None, us("2026-11-24T10:00:00Z"),
                      us("2026-11-24T10:01:00Z"))
                 for closed in (None, us("2026-11-24T10:05:00Z"))]
    facts = [*DIMENSION_FACTS, *responded]
    totals = {group_by: metrics(facts, group_by)["total"] for group_by in GROUPINGS}
    assert totals["closed_by"]["first_response_seconds"]["count"] == 2
    assert all(total == totals["day"] for total in totals.values())
    [user] = [r for r in metrics(facts, "closed_by")["rows"] if r["key"] == "user"]
    assert user["first_response_seconds"]["count"] == 1


def test_only_open_conversations_give_no_rows_for_close_dimensions() -> None:
    facts = [fact("2026-11-24T10:00:00Z", assignee="ann")]
    for group_by in ("closed_by", "assignee", "team"):
        result = metrics(facts, group_by)
        assert result["rows"] == []
        assert result["total"]["opened"] == 1


# ---------------------------------------------------------------- extremes
@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Tokyo", "Pacific/Kiritimati", "UTC"])
@pytest.mark.parametrize("group_by", ["day", "week", "month"])
def test_the_ends_of_the_calendar_do_not_crash(tz: str, group_by: str) -> None:
    facts = [fact("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"),
             fact("9999-12-31T23:00:00Z")]
    result = metrics(facts, group_by, tz)
    assert result["total"]["opened"] == 2
    assert result["total"]["closed"] == 1
