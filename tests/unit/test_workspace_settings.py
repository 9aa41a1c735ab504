"""Workspace settings of CONTRACT §6.1 (schemas/workspace.py) and their CLI texts
(schemas/workspace_text.py): one test per validation rule, the JSON form, ``PUT``
patches, the business-hours and duration parsers, and format -> parse round trips."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import schedules

from schemas.workspace import (
    BusinessInterval,
    Schedule,
    SettingsError,
    WorkspaceSettings,
    apply_patch,
    validate_settings,
)
from schemas.workspace_text import (
    format_business_hours,
    format_duration,
    parse_business_hours,
    parse_duration,
)

FULL = {
    "timezone": "Europe/Berlin",
    "business_hours": [{"day": "mon", "start": "09:00", "end": "18:00"},
                       {"day": "sat", "start": "10:00", "end": "24:00"}],
    "inactivity_timeout_seconds": 3600,
}


def rejected(data: object) -> str:
    with pytest.raises(SettingsError) as caught:
        validate_settings(data)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_are_filled_in() -> None:
    assert validate_settings({}).model_dump(mode="json") == {
        "timezone": "UTC", "business_hours": None, "inactivity_timeout_seconds": None}


def test_the_json_form_is_the_settings_object_and_round_trips() -> None:
    parsed = validate_settings(FULL)
    assert parsed.model_dump(mode="json") == FULL
    assert WorkspaceSettings.model_validate_json(parsed.model_dump_json()) == parsed
    assert validate_settings(json.loads(parsed.model_dump_json())) == parsed


def test_intervals_are_kept_in_day_order() -> None:
    shuffled = dict(FULL, business_hours=list(reversed(FULL["business_hours"])))  # type: ignore[call-overload]
    assert validate_settings(shuffled) == validate_settings(FULL)


def test_settings_are_frozen() -> None:
    parsed = validate_settings(FULL)
    with pytest.raises(ValueError, match="frozen"):
        parsed.timezone = "UTC"  # type: ignore[misc]


@pytest.mark.parametrize(("data", "names"), [
    ({"timezone": "Mars/Olympus"}, ["timezone", "unknown time zone", "Mars/Olympus"]),
    ({"timezone": "Europe"}, ["unknown time zone"]),
    ({"timezone": "../etc/passwd"}, ["unknown time zone"]),
    ({"timezone": 1}, ["timezone", "string"]),
    ({"business_hours": [{"day": "mon", "start": "25:00", "end": "26:00"}]},
     ["business_hours[0].start", "'25:00'"]),
    ({"business_hours": [{"day": "mon", "start": "09:00", "end": "24:30"}]},
     ["business_hours[0].end", "'24:30'"]),
    ({"business_hours": [{"day": "mon", "start": "09:60", "end": "10:00"}]}, ["'09:60'"]),
    ({"business_hours": [{"day": "mon", "start": "9:00", "end": "10:00"}]}, ["HH:MM"]),
    ({"business_hours": [{"day": "mon", "start": "24:00", "end": "24:00"}]},
     ["24:00 may only end"]),
    ({"business_hours": [{"day": "funday", "start": "09:00", "end": "18:00"}]},
     ["business_hours[0].day", "'funday'"]),
    ({"business_hours": [{"day": "mon", "start": "18:00", "end": "09:00"}]},
     ["mon 18:00-09:00", "start must be before end"]),
    ({"business_hours": [{"day": "mon", "start": "09:00", "end": "09:00"}]},
     ["start must be before end"]),
    ({"business_hours": [{"day": "tue", "start": "09:00", "end": "18:00"},
                         {"day": "tue", "start": "17:59", "end": "20:00"}]},
     ["tue 09:00-18:00 overlaps tue 17:59-20:00"]),
    ({"business_hours": []}, ["business_hours", "empty"]),
    ({"business_hours": "mon-fri 09:00-18:00"}, ["business_hours", "list"]),
    ({"business_hours": [{"day": "mon", "start": "09:00"}]}, ["business_hours[0].end"]),
    ({"inactivity_timeout_seconds": 59}, ["inactivity_timeout_seconds", "at least 60"]),
    ({"inactivity_timeout_seconds": 0}, ["at least 60"]),
    ({"inactivity_timeout_seconds": 400_000_000}, ["at most"]),
    ({"inactivity_timeout_seconds": "3600"}, ["inactivity_timeout_seconds", "integer"]),
    ({"inactivity_timeout_seconds": 3600.5}, ["integer"]),
    ({"inactivity_timeout_seconds": True}, ["integer"]),
    ({"timezone": "UTC", "colour": "blue"}, ["colour: unknown key"]),
    ({"business_hours": [{"day": "mon", "start": "09:00", "end": "18:00", "x": 1}]},
     ["business_hours[0].x: unknown key"]),
    ([], ["must be an object"]),
])
def test_invalid_settings_name_the_problem(data: object, names: list[str]) -> None:
    message = rejected(data)
    for name in names:
        assert name in message


def test_adjacent_intervals_and_24_00_are_valid() -> None:
    parsed = validate_settings({"business_hours": [
        {"day": "mon", "start": "00:00", "end": "12:00"},
        {"day": "mon", "start": "12:00", "end": "24:00"},
        {"day": "tue", "start": "00:00", "end": "01:00"}],
        "inactivity_timeout_seconds": 60})
    assert [str(i) for i in parsed.business_hours or ()] == [
        "mon 00:00-12:00", "mon 12:00-24:00", "tue 00:00-01:00"]
    assert parsed.business_hours is not None
    assert parsed.business_hours[1].end_minute == 1440


def test_a_patch_replaces_given_keys_and_null_resets() -> None:
    current = validate_settings(FULL)
    patched = apply_patch(current, {"timezone": "America/New_York"})
    assert patched.timezone == "America/New_York"
    assert patched.business_hours == current.business_hours
    assert patched.inactivity_timeout_seconds == 3600
    reset = apply_patch(patched, {"business_hours": None, "timezone": None})
    assert reset.model_dump(mode="json") == {
        "timezone": "UTC", "business_hours": None, "inactivity_timeout_seconds": 3600}
    with pytest.raises(SettingsError, match="colour: unknown key"):
        apply_patch(current, {"colour": None})
    with pytest.raises(SettingsError, match="at least 60"):
        apply_patch(current, {"inactivity_timeout_seconds": 5})


@pytest.mark.parametrize(("spec", "expected"), [
    ("mon-fri 09:00-18:00, sat 10:00-14:00",
     [("mon", "09:00", "18:00"), ("tue", "09:00", "18:00"), ("wed", "09:00", "18:00"),
      ("thu", "09:00", "18:00"), ("fri", "09:00", "18:00"), ("sat", "10:00", "14:00")]),
    ("Sunday 9:00 - 12:00 13:00-24:00", [("sun", "09:00", "12:00"), ("sun", "13:00", "24:00")]),
    ("fri-mon 08:00-20:00", [("mon", "08:00", "20:00"), ("fri", "08:00", "20:00"),
                             ("sat", "08:00", "20:00"), ("sun", "08:00", "20:00")]),
    ("weekend 10:00-12:00", [("sat", "10:00", "12:00"), ("sun", "10:00", "12:00")]),
    ("wed-wed 10:00-12:00", [("wed", "10:00", "12:00")]),
])
def test_business_hours_specs(spec: str, expected: list[tuple[str, str, str]]) -> None:
    parsed = parse_business_hours(spec)
    assert parsed is not None
    assert [(i.day, i.start, i.end) for i in parsed] == expected


def test_none_means_always_open() -> None:
    assert parse_business_hours(" None ") is None
    assert format_business_hours(None) == "none"


@pytest.mark.parametrize(("spec", "names"), [
    ("", ["empty"]),
    ("mon", ["'mon'", "HH:MM-HH:MM"]),
    ("mon 9-18", ["'9-18'"]),
    ("funday 09:00-10:00", ["unknown day 'funday'"]),
    ("mon-funday 09:00-10:00", ["unknown day 'funday'"]),
    ("mon 25:00-26:00", ["'25:00'"]),
    ("mon 22:00-06:00", ["start must be before end", "two intervals"]),
    ("mon-fri 09:00-18:00, wed 12:00-13:00", ["wed 09:00-18:00 overlaps wed 12:00-13:00"]),
    ("mon 09:00-18:00,", ["''"]),
])
def test_bad_business_hours_specs_name_the_problem(spec: str, names: list[str]) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_business_hours(spec)
    assert "\n" not in str(caught.value)
    for name in names:
        assert name in str(caught.value)


def test_format_joins_days_with_the_same_hours() -> None:
    spec = "mon-fri 09:00-12:00 13:00-18:00, sat 10:00-14:00, sun 10:00-14:00"
    assert format_business_hours(parse_business_hours(spec)) == (
        "mon-fri 09:00-12:00 13:00-18:00, sat-sun 10:00-14:00")
    assert format_business_hours(parse_business_hours("tue 09:00-10:00, thu 09:00-10:00")) == (
        "tue 09:00-10:00, thu 09:00-10:00")


@pytest.mark.parametrize(("text", "seconds"), [
    ("45s", 45), ("90m", 5400), ("24h", 86400), ("2d", 172800), ("1w", 604800),
    ("1h30m", 5400), ("1 h 30 m", 5400), ("3600", 3600), (" 90M ", 5400), ("off", None),
    ("OFF", None)])
def test_durations(text: str, seconds: int | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1.5h", "-60", "10x", "h", "ten minutes", "²"])
def test_bad_durations_name_the_problem(text: str) -> None:
    with pytest.raises(SettingsError, match=r"duration .*expected e\.g\. 90m"):
        parse_duration(text)


def test_format_duration_uses_the_largest_whole_unit() -> None:
    assert [format_duration(s) for s in (None, 45, 60, 5400, 7200, 86400, 90061)] == [
        "off", "45s", "1m", "90m", "2h", "1d", "90061s"]


@settings(max_examples=200, deadline=None)
@given(schedules())
def test_format_then_parse_gives_the_schedule_back(schedule: Schedule) -> None:
    canonical = WorkspaceSettings(business_hours=schedule).business_hours
    assert parse_business_hours(format_business_hours(schedule)) == canonical


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.integers(0, 10**9)))
def test_format_then_parse_gives_the_duration_back(seconds: int | None) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@settings(max_examples=100, deadline=None)
@given(schedules(), st.sampled_from(["UTC", "Europe/Berlin", "Australia/Lord_Howe"]),
       st.one_of(st.none(), st.integers(60, 10**7)))
def test_settings_json_round_trip(schedule: Schedule, zone: str, timeout: int | None) -> None:
    original = WorkspaceSettings(timezone=zone, business_hours=schedule,
                                 inactivity_timeout_seconds=timeout)
    assert validate_settings(json.loads(original.model_dump_json())) == original


def test_the_json_schema_patterns_accept_exactly_the_valid_times() -> None:
    properties = WorkspaceSettings.model_json_schema()["$defs"]["BusinessInterval"]["properties"]
    texts = [f"{hour:02d}:{minute:02d}" for hour in range(100) for minute in range(100)]
    for field, other in (("start", {"end": "24:00"}), ("end", {"start": "00:00"})):
        pattern = re.compile(properties[field]["pattern"])
        for text in texts:
            try:
                BusinessInterval.model_validate({"day": "mon", **other, field: text})
                valid = True
            except ValueError as exc:
                valid = "start must be before end" in str(exc)
            assert bool(pattern.fullmatch(text)) == valid, (field, text)
