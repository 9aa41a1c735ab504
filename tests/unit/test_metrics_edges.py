"""Metrics edges written against the survivors of mutation testing (docs/mutation.md).

Re-contacts are summed, first responses count on the day they happen (inside
``from``..``to`` only), business-hours durations are the clock's measure of the
same interval, and the store's fact window is exactly the documented
``[from - 2 days, to + 1 day + 2 days)``, half open.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.projections.domain.metrics import (
    Fact,
    MetricsQuery,
    compute,
    fact_window,
    in_window,
    to_us,
)

DAY = datetime(2026, 11, 24, tzinfo=UTC)


def us(moment: datetime) -> int:
    return to_us(moment)


def fact(opened: datetime, *, closed: datetime | None = None, closed_by: str | None = None,
         first_message: datetime | None = None, first_response: datetime | None = None,
         recontact: bool = False, channel: str | None = "sms") -> Fact:
    return Fact(opened_us=us(opened), closed_us=us(closed) if closed else None,
                channel=channel, opened_by="contact", closed_by=closed_by,
                assignee_id=None, team_id=None,
                first_message_us=us(first_message) if first_message else None,
                first_response_us=us(first_response) if first_response else None,
                recontact=recontact)


def test_recontacts_are_summed_per_row_and_in_total() -> None:
    facts = [fact(DAY + timedelta(hours=h), recontact=r)
             for h, r in ((1, True), (2, True), (3, False))]
    for group_by in ("day", "channel"):
        result = compute(MetricsQuery("w", group_by=group_by), facts)
        assert [row["recontacts"] for row in result["rows"]] == [2]
        assert [row["opened"] for row in result["rows"]] == [3]
        assert result["total"]["recontacts"] == 2


def test_first_responses_count_only_on_days_inside_the_range() -> None:
    query = MetricsQuery("w", date_from=DAY.date(), date_to=DAY.date())
    facts = [
        # asked the day before, answered inside the range: counts
        fact(DAY - timedelta(hours=1), first_message=DAY - timedelta(hours=1),
             first_response=DAY + timedelta(minutes=30)),
        # answered the day before / the day after the range: does not
        fact(DAY - timedelta(hours=3), first_message=DAY - timedelta(hours=3),
             first_response=DAY - timedelta(hours=2)),
        fact(DAY + timedelta(hours=23), first_message=DAY + timedelta(hours=23),
             first_response=DAY + timedelta(hours=25)),
    ]
    total = compute(query, facts)["total"]
    assert total["first_response_seconds"]["count"] == 1
    assert total["first_response_seconds"]["max"] == 5400.0


def test_business_durations_are_the_clocks_measure_of_the_same_interval() -> None:
    asked: list[tuple[int, int]] = []

    def quarter(start_us: int, end_us: int) -> float:  # open a quarter of the time
        asked.append((start_us, end_us))
        return (end_us - start_us) / 4_000_000

    one = fact(DAY, closed=DAY + timedelta(hours=1), closed_by="user", first_message=DAY,
               first_response=DAY + timedelta(minutes=1))
    result = compute(MetricsQuery("w"), [one], business=quarter)
    total = result["total"]
    assert (total["resolution_seconds"]["p50"], total["resolution_business_seconds"]["p50"]) == (
        3600.0, 900.0)
    assert (total["first_response_seconds"]["p50"],
            total["first_response_business_seconds"]["p50"]) == (60.0, 15.0)
    assert sorted(asked) == sorted([(one.opened_us, one.closed_us),
                                    (one.first_message_us, one.first_response_us)])


def test_the_fact_window_is_two_days_wider_on_each_side_and_half_open() -> None:
    both = MetricsQuery("w", date_from=date(2026, 11, 24), date_to=date(2026, 11, 25))
    low, high = fact_window(both)  # type: ignore[misc]
    assert low == us(datetime(2026, 11, 22, tzinfo=UTC))
    assert high == us(datetime(2026, 11, 28, tzinfo=UTC))  # the day after `to`, + 2 days
    assert fact_window(MetricsQuery("w", date_to=date(2026, 11, 25))) == (-(2**63) + 1, high)
    assert fact_window(MetricsQuery("w", date_from=date(2026, 11, 24))) == (low, 2**63 - 1)
    assert fact_window(MetricsQuery("w")) is None
    assert fact_window(MetricsQuery("w", date_from=date.min, date_to=date.max)) == (
        -(2**63) + 1, 2**63 - 1)
    # a moment on `to` late in the day in UTC-12 is still inside
    last = datetime(2026, 11, 25, 23, 59, tzinfo=UTC) + timedelta(hours=12)
    assert in_window(fact(last), (low, high))
    window = (low, high)
    at_low, at_high = datetime(2026, 11, 22, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)
    assert in_window(fact(at_low), window)
    assert not in_window(fact(at_low - timedelta(microseconds=1)), window)
    assert in_window(fact(at_high - timedelta(microseconds=1)), window)
    assert not in_window(fact(at_high), window)
    outside = at_low - timedelta(days=1)
    assert in_window(fact(outside, closed=at_low), window)
    assert in_window(fact(outside, first_message=outside, first_response=at_low), window)
    assert not in_window(fact(outside, closed=at_high, first_response=at_high), window)


def test_local_dates_memoise_whole_hours_and_serve_them_from_the_memo() -> None:
    """The hot path: an hour with one offset and one local date is looked up once."""
    from zoneinfo import ZoneInfo

    from services.projections.domain.metrics import _LocalDates

    berlin = _LocalDates(ZoneInfo("Europe/Berlin"))
    noon = us(DAY + timedelta(hours=11, minutes=20))  # 12:20 in Berlin
    hour = noon // 3_600_000_000
    assert berlin(noon) == date(2026, 11, 24)
    assert berlin._hours == {hour: date(2026, 11, 24)}
    berlin._hours[hour] = date(2000, 1, 1)  # a later call in that hour reads the memo
    assert berlin(noon + 60_000_000) == date(2000, 1, 1)
    last_hour = us(DAY + timedelta(hours=22, minutes=30))  # 23:00-24:00 Berlin: one date
    assert berlin(last_hour) == date(2026, 11, 24)
    assert berlin._hours[last_hour // 3_600_000_000] == date(2026, 11, 24)
    kolkata = _LocalDates(ZoneInfo("Asia/Kolkata"))  # UTC 18:00-19:00 is 23:30-00:30 there
    before, after = us(DAY + timedelta(hours=18, minutes=15)), us(DAY + timedelta(hours=18.75))
    assert (kolkata(before), kolkata(after)) == (date(2026, 11, 24), date(2026, 11, 25))
    assert kolkata._hours == {before // 3_600_000_000: None}  # computed exactly each time
