"""Business-hours arithmetic of CONTRACT §6.3 (services/projections/domain/business_hours.py).

Examples per rule (weekends, ``24:00``, merged adjacent intervals, each DST case in
Europe/Berlin, America/New_York and Australia/Lord_Howe), then properties: equal to a
minute-by-minute count over random schedules and intervals around DST changes,
additive, never above the calendar duration, complementary schedules add up to it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import schedules

from schemas.workspace import DAYS, BusinessInterval, Schedule
from schemas.workspace_text import parse_business_hours
from services.projections.domain.business_hours import (
    BusinessCalendar,
    business_calendar,
    business_seconds,
)
from services.projections.domain.zone_offsets import ZoneOffsets

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
HOUR = 3600.0
OFFICE = parse_business_hours("mon-fri 09:00-18:00")
ALWAYS = parse_business_hours("daily 00:00-24:00")
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def hours(start: datetime, end: datetime, spec: str, tz: ZoneInfo) -> float:
    return business_seconds(start, end, parse_business_hours(spec), tz) / HOUR


def test_inside_outside_and_across_the_weekend() -> None:
    monday = datetime(2026, 11, 30, tzinfo=BERLIN)
    assert business_seconds(monday.replace(hour=10), monday.replace(hour=12, minute=30),
                            OFFICE, BERLIN) == 2.5 * HOUR
    assert business_seconds(monday.replace(hour=6), monday.replace(hour=8), OFFICE, BERLIN) == 0
    friday_5pm = datetime(2026, 12, 4, 17, tzinfo=BERLIN)
    monday_10am = datetime(2026, 12, 7, 10, tzinfo=BERLIN)
    assert business_seconds(friday_5pm, monday_10am, OFFICE, BERLIN) == 2 * HOUR


def test_start_and_end_may_be_in_any_zone() -> None:
    start = datetime(2026, 11, 30, 8, tzinfo=UTC)  # 09:00 in Berlin
    end = datetime(2026, 11, 30, 10, 30, tzinfo=ZoneInfo("Asia/Tokyo"))  # 02:30 UTC...
    assert business_seconds(start, end, OFFICE, BERLIN) == 0  # ... before the start
    end = datetime(2026, 11, 30, 20, tzinfo=ZoneInfo("Asia/Tokyo"))  # 11:00 UTC, 12:00 Berlin
    assert business_seconds(start, end, OFFICE, BERLIN) == 3 * HOUR


def test_empty_and_reversed_intervals_are_zero() -> None:
    moment = datetime(2026, 11, 30, 10, tzinfo=BERLIN)
    assert business_seconds(moment, moment, OFFICE, BERLIN) == 0
    assert business_seconds(moment, moment - timedelta(hours=1), OFFICE, BERLIN) == 0
    assert business_seconds(moment, moment - timedelta(hours=1), None, BERLIN) == 0


def test_without_schedule_the_calendar_duration_in_real_time() -> None:
    # same tzinfo on both ends: Python's own subtraction would say 24 h (wall clock)
    start, end = datetime(2026, 3, 29, tzinfo=BERLIN), datetime(2026, 3, 30, tzinfo=BERLIN)
    assert business_seconds(start, end, None, BERLIN) == 23 * HOUR
    assert business_seconds(start, end + timedelta(microseconds=5), None, BERLIN) == (
        23 * HOUR + 0.000005)


def test_24_00_ends_the_day_and_adjacent_intervals_join() -> None:
    sunday_11pm = datetime(2026, 12, 6, 23, tzinfo=BERLIN)
    monday_1am = datetime(2026, 12, 7, 1, tzinfo=BERLIN)
    assert hours(sunday_11pm, monday_1am, "sun 20:00-24:00", BERLIN) == 1
    assert hours(sunday_11pm, monday_1am, "sun 20:00-24:00, mon 00:00-00:30", BERLIN) == 1.5
    assert hours(sunday_11pm, monday_1am, "mon 00:00-06:00", BERLIN) == 1
    day = datetime(2026, 12, 7, tzinfo=BERLIN)
    assert hours(day, day + timedelta(days=1), "mon 08:00-12:00 12:00-16:00", BERLIN) == 8


def test_a_whole_year_of_office_hours() -> None:
    start, end = datetime(2026, 1, 1, tzinfo=BERLIN), datetime(2027, 1, 1, tzinfo=BERLIN)
    assert business_seconds(start, end, OFFICE, BERLIN) == 261 * 9 * HOUR  # 261 weekdays
    years = business_seconds(start, datetime(2036, 1, 1, tzinfo=BERLIN), OFFICE, BERLIN)
    days = (start.date() + timedelta(days=n) for n in range(3652))  # 2026..2035
    assert years == sum(day.weekday() < 5 for day in days) * 9 * HOUR


@pytest.mark.parametrize(("tz", "day", "real_hours"), [
    (BERLIN, datetime(2026, 3, 29), 23), (BERLIN, datetime(2026, 10, 25), 25),
    (NEW_YORK, datetime(2026, 3, 8), 23), (NEW_YORK, datetime(2026, 11, 1), 25),
    (LORD_HOWE, datetime(2026, 10, 4), 23.5), (LORD_HOWE, datetime(2026, 4, 5), 24.5)])
def test_a_whole_day_open_lasts_as_long_as_the_day(
        tz: ZoneInfo, day: datetime, real_hours: float) -> None:
    start = day.replace(tzinfo=tz)
    assert hours(start, start + timedelta(days=1), "daily 00:00-24:00", tz) == real_hours
    assert hours(start, start + timedelta(days=1), "daily 09:00-18:00", tz) == 9


def test_a_boundary_at_a_skipped_local_time_is_the_change_instant() -> None:
    # Berlin 2026-03-29: 02:00 CET -> 03:00 CEST; local 02:00-03:00 does not exist
    sunday = datetime(2026, 3, 29, tzinfo=BERLIN)
    week = (sunday, sunday + timedelta(days=1))
    assert hours(*week, "sun 02:00-03:00", BERLIN) == 0
    assert hours(*week, "sun 02:30-04:00", BERLIN) == 1  # 03:00-04:00 CEST
    assert hours(*week, "sun 01:00-02:30", BERLIN) == 1  # 01:00-02:00 CET


def test_repeated_local_times_count_on_both_passes() -> None:
    # Berlin 2026-10-25: 03:00 CEST -> 02:00 CET; local 02:00-03:00 happens twice
    sunday = datetime(2026, 10, 25, tzinfo=BERLIN)
    day = (sunday, sunday + timedelta(days=1))
    assert hours(*day, "sun 02:00-03:00", BERLIN) == 2
    assert hours(*day, "sun 02:30-24:00", BERLIN) == 22  # 0.5 h first pass + 21.5 h
    first_pass_0230 = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    second_pass_0230 = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    spec = parse_business_hours("sun 02:00-02:45")
    # 02:30-02:45 of the first pass, then 02:00-02:30 of the second
    assert business_seconds(first_pass_0230, second_pass_0230, spec, BERLIN) == 45 * 60


def test_calendar_micros_match_seconds() -> None:
    calendar = business_calendar(OFFICE, BERLIN)
    assert calendar is business_calendar(tuple(OFFICE or ()), BERLIN)
    start = datetime(2026, 12, 4, 17, 0, 0, 250, tzinfo=UTC)
    end = datetime(2026, 12, 8, 9, tzinfo=UTC)
    start_us = int((start - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    end_us = int((end - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    assert calendar.micros(start_us, end_us) == round(calendar.seconds(start, end) * 1e6)
    assert calendar.micros(end_us, start_us) == 0
    assert BusinessCalendar(None, BERLIN).micros(start_us, end_us) == end_us - start_us


def test_aware_datetimes_are_required() -> None:
    with pytest.raises(TypeError):
        business_seconds(datetime(2026, 1, 1), datetime(2026, 1, 2), OFFICE, BERLIN)


def test_zone_offsets_find_the_changes_exactly_and_grow_both_ways() -> None:
    def table_range(offsets: ZoneOffsets, start: datetime, end: datetime) -> list[int]:
        start_us, end_us = int(start.timestamp()) * 10**6, int(end.timestamp()) * 10**6
        return [c for c in offsets.table(start_us, end_us)[2] if start_us <= c < end_us]

    year = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    changes = table_range(ZoneOffsets(BERLIN), *year)
    assert changes == [int(datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp()) * 10**6,
                       int(datetime(2026, 10, 25, 1, tzinfo=UTC).timestamp()) * 10**6]
    grown = ZoneOffsets(BERLIN)
    table_range(grown, datetime(2040, 1, 1, tzinfo=UTC), datetime(2040, 2, 1, tzinfo=UTC))
    table_range(grown, datetime(1995, 1, 1, tzinfo=UTC), datetime(1995, 2, 1, tzinfo=UTC))
    assert table_range(grown, *year) == changes
    low, high, all_changes, all_offsets = grown.table(0, 0)
    assert len(all_offsets) == len(all_changes) + 1
    assert all_changes == sorted(set(all_changes)) and low < all_changes[0] < high
    for change, before, after in zip(all_changes, all_offsets, all_offsets[1:], strict=False):
        moment = datetime.fromtimestamp(change // 10**6, UTC)
        assert after - before == int(
            (moment.astimezone(BERLIN).utcoffset() or timedelta()).total_seconds() * 10**6
            - ((moment - timedelta(seconds=1)).astimezone(BERLIN).utcoffset()
               or timedelta()).total_seconds() * 10**6)


# ---------------------------------------------------------------- properties

ORACLE_ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                "America/St_Johns", "Pacific/Chatham", "Asia/Kathmandu")
DST_DAYS = (datetime(2026, 3, 29), datetime(2026, 10, 25), datetime(2026, 3, 8),
            datetime(2026, 11, 1), datetime(2026, 4, 5), datetime(2026, 10, 4),
            datetime(2025, 9, 28), datetime(2026, 4, 5, 3), datetime(2027, 6, 15))


ALL_ZONES = tuple(sorted(available_timezones()))


@st.composite
def minute_intervals(draw: st.DrawFn) -> tuple[ZoneInfo, datetime, datetime]:
    if draw(st.booleans()):  # a zone of the list around one of its DST days
        tz = ZoneInfo(draw(st.sampled_from(ORACLE_ZONES)))
        around = draw(st.sampled_from(DST_DAYS)).replace(tzinfo=tz).astimezone(UTC)
    else:  # any zone at any time of a decade
        tz = ZoneInfo(draw(st.sampled_from(ALL_ZONES)))
        around = draw(st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1),
                                   timezones=st.just(UTC))).replace(second=0, microsecond=0)
    start = around + timedelta(minutes=draw(st.integers(-3 * 1440, 3 * 1440)))
    return tz, start, start + timedelta(minutes=draw(st.integers(0, 4 * 1440)))


def minute_count(start: datetime, end: datetime, schedule: Schedule, tz: ZoneInfo) -> float:
    """The oracle: every real minute whose local wall-clock time is inside the schedule."""
    open_minutes = {(i.day_index, minute) for i in schedule
                    for minute in range(i.start_minute, i.end_minute)}
    counted, moment = 0, start
    while moment < end:
        local = moment.astimezone(tz)
        counted += (local.weekday(), local.hour * 60 + local.minute) in open_minutes
        moment += timedelta(minutes=1)
    return counted * 60.0


@PROPERTY
@given(schedules(), minute_intervals())
def test_equals_a_minute_by_minute_count(
        schedule: Schedule, interval: tuple[ZoneInfo, datetime, datetime]) -> None:
    tz, start, end = interval
    assert business_seconds(start, end, schedule, tz) == minute_count(start, end, schedule, tz)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_ZONES),
       st.datetimes(datetime(1901, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_zone_offsets_agree_with_zoneinfo(zone: str, moment: datetime) -> None:
    tz = ZoneInfo(zone)
    expected = moment.astimezone(tz).utcoffset()
    assert expected is not None
    instant_us = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert ZoneOffsets(tz).offset_at(instant_us) == expected // timedelta(microseconds=1)


instants = st.datetimes(datetime(2019, 1, 1), datetime(2031, 1, 1), timezones=st.just(UTC))


@PROPERTY
@given(schedules(), st.sampled_from(ORACLE_ZONES), instants, instants, instants)
def test_additive_and_never_above_the_calendar(
        schedule: Schedule, zone: str, first: datetime, second: datetime,
        third: datetime) -> None:
    start, middle, end = sorted((first, second, third))
    calendar = business_calendar(schedule, ZoneInfo(zone))
    whole = calendar.seconds(start, end)
    assert calendar.seconds(start, middle) + calendar.seconds(middle, end) == pytest.approx(
        whole, abs=1e-6)
    assert 0 <= whole <= (end - start).total_seconds()


@PROPERTY
@given(schedules(), st.sampled_from(ORACLE_ZONES), instants, instants)
def test_a_schedule_and_its_complement_add_up_to_the_calendar(
        schedule: Schedule, zone: str, first: datetime, second: datetime) -> None:
    start, end = sorted((first, second))
    tz = ZoneInfo(zone)
    both = business_seconds(start, end, schedule, tz) + business_seconds(
        start, end, complement(schedule), tz)
    assert both == pytest.approx((end - start).total_seconds(), abs=1e-6)
    assert business_seconds(start, end, ALWAYS, tz) == (end - start).total_seconds()


def complement(schedule: Schedule) -> Schedule:
    gaps = []
    for index, day in enumerate(DAYS):
        edge = 0
        cuts = sorted((i.start_minute, i.end_minute) for i in schedule if i.day_index == index)
        for start, end in [*cuts, (1440, 1440)]:
            if start > edge:
                gaps.append(BusinessInterval(day=day, start=f"{edge // 60:02d}:{edge % 60:02d}",
                                             end=f"{start // 60:02d}:{start % 60:02d}"))
            edge = max(edge, end)
    return tuple(gaps)


def test_a_schedule_given_as_a_list_is_read_on_every_call() -> None:
    monday = datetime(2026, 11, 30, 9, tzinfo=BERLIN)
    schedule = list(parse_business_hours("mon 09:00-10:00") or ())
    assert business_seconds(monday, monday + timedelta(hours=2), schedule, BERLIN) == HOUR
    schedule[0] = BusinessInterval(day="mon", start="09:00", end="11:00")
    assert business_seconds(monday, monday + timedelta(hours=2), schedule, BERLIN) == 2 * HOUR
