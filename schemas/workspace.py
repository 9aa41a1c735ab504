"""Workspace settings of CONTRACT §6.1: time zone, weekly business hours, auto-close.

The JSON form (``WorkspaceSettings.model_dump(mode="json")``) is exactly the settings
object of §6.1 with the defaults filled in, so ``GET /v1/workspaces/{ws}/settings``,
``bonychat workspace show --format json`` and the stored settings event share it.

Validation is strict and every failure names the problem: an unknown IANA zone,
``25:00``, an unknown day, ``start >= end``, overlapping intervals of one day, a
timeout under 60 seconds, an unknown key. :func:`validate_settings` turns pydantic's
report into one line (:class:`SettingsError`, a ``ValueError``) for the CLI (exit 2)
and HTTP (400). Intervals are kept in a canonical order (day, then start), so equal
schedules compare equal however they were written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from itertools import pairwise
from typing import Annotated, Final, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: Final[tuple[Day, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_INDEX: Final[dict[str, int]] = {day: index for index, day in enumerate(DAYS)}
MIN_INACTIVITY_TIMEOUT_SECONDS: Final = 60
MAX_INACTIVITY_TIMEOUT_SECONDS: Final = 10 * 365 * 86_400  # keeps closed_at in range
_START_PATTERN: Final = "^([01][0-9]|2[0-3]):[0-5][0-9]$"
_END_PATTERN: Final = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
_TIME: Final = re.compile(r"([0-9][0-9]):([0-9][0-9])")


class SettingsError(ValueError):
    """Invalid workspace settings or settings text; the message is one line."""


def minute_of_day(text: str) -> int:
    """``"HH:MM"`` -> minutes since midnight (``"24:00"`` -> 1440)."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise SettingsError(f"{text!r} is not a time of day (HH:MM)")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes != 0):
        raise SettingsError(f"{text!r} is not a time of day (00:00 to 23:59, or 24:00 as an end)")
    return hours * 60 + minutes


def _start_time(text: str) -> str:
    if minute_of_day(text) == 1440:
        raise SettingsError("24:00 may only end an interval")
    return text


def _end_time(text: str) -> str:
    minute_of_day(text)
    return text


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def _zone(key: str) -> str:
    if key not in _zones():
        raise SettingsError(f"unknown time zone {key!r} (an IANA name such as Europe/Berlin)")
    return key


def _timeout(seconds: int | None) -> int | None:
    if seconds is not None and seconds < MIN_INACTIVITY_TIMEOUT_SECONDS:
        raise SettingsError(
            f"must be at least {MIN_INACTIVITY_TIMEOUT_SECONDS} seconds (got {seconds})")
    if seconds is not None and seconds > MAX_INACTIVITY_TIMEOUT_SECONDS:
        raise SettingsError(f"must be at most 10 years = {MAX_INACTIVITY_TIMEOUT_SECONDS} seconds"
                            f" (got {seconds})")
    return seconds


StartTime = Annotated[str, AfterValidator(_start_time)]
EndTime = Annotated[str, AfterValidator(_end_time)]
ZoneName = Annotated[str, Field(strict=True), AfterValidator(_zone)]


class BusinessInterval(BaseModel):
    """One opening interval of the weekly schedule, in the workspace's wall-clock time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: Day
    start: StartTime = Field(description="HH:MM, 00:00 to 23:59",
                             json_schema_extra={"pattern": _START_PATTERN})
    end: EndTime = Field(description="HH:MM after start; 24:00 = midnight ending the day",
                         json_schema_extra={"pattern": _END_PATTERN})

    @model_validator(mode="after")
    def _check_order(self) -> BusinessInterval:
        if self.start_minute >= self.end_minute:
            raise SettingsError(
                f"{self.day} {self.start}-{self.end}: start must be before end "
                "(write overnight hours as two intervals, e.g. fri 22:00-24:00, sat 00:00-06:00)")
        return self

    @property
    def start_minute(self) -> int:
        return minute_of_day(self.start)

    @property
    def end_minute(self) -> int:
        return minute_of_day(self.end)

    @property
    def day_index(self) -> int:
        """0 = Monday ... 6 = Sunday (``date.weekday()``)."""
        return DAY_INDEX[self.day]

    def __str__(self) -> str:
        return f"{self.day} {self.start}-{self.end}"


Schedule = tuple[BusinessInterval, ...]


def canonical_schedule(schedule: Schedule | None) -> Schedule | None:
    if schedule is None:
        return None
    if not schedule:
        raise SettingsError("business_hours is empty: use null (none) for always open")
    ordered = tuple(sorted(schedule, key=lambda i: (i.day_index, i.start_minute, i.end_minute)))
    for before, after in pairwise(ordered):
        if before.day == after.day and after.start_minute < before.end_minute:
            raise SettingsError(f"business_hours: {before} overlaps {after}")
    return ordered


class WorkspaceSettings(BaseModel):
    """The settings object of CONTRACT §6.1; every field optional with its default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: ZoneName = Field(
        default="UTC", description="IANA zone of the workspace (metrics default, business hours)")
    business_hours: Annotated[Schedule | None, AfterValidator(canonical_schedule)] = Field(
        default=None, description="weekly schedule in `timezone`; null = always open")
    inactivity_timeout_seconds: Annotated[
        int | None, Field(strict=True), AfterValidator(_timeout)] = Field(
        default=None, description="auto-close after this many seconds without activity "
        f"(integer, {MIN_INACTIVITY_TIMEOUT_SECONDS} to {MAX_INACTIVITY_TIMEOUT_SECONDS}); "
        "null = never")


def validate_settings(data: object) -> WorkspaceSettings:
    """A settings object (parsed JSON) -> :class:`WorkspaceSettings`, or one-line
    :class:`SettingsError` naming the first problem."""
    try:
        return WorkspaceSettings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(one_line(exc)) from None


def apply_patch(current: WorkspaceSettings, patch: Mapping[str, object]) -> WorkspaceSettings:
    """``PUT`` semantics of §6.1: the given keys replace, ``null`` resets a key to its
    default, absent keys stay. Unknown keys and invalid values raise :class:`SettingsError`."""
    merged: dict[str, object] = current.model_dump(mode="json")
    for key, value in patch.items():
        if value is None and key in WorkspaceSettings.model_fields:
            merged.pop(key, None)
        else:
            merged[key] = value
    return validate_settings(merged)


_PLAIN_MESSAGES: Final[dict[str, str]] = {
    "extra_forbidden": "unknown key",
    "tuple_type": "must be a list of {day, start, end} objects",
    "model_type": "must be an object",
    "dict_type": "must be an object",
}


def one_line(exc: ValidationError) -> str:
    """The first error of a pydantic report as ``location: message``."""
    error = exc.errors(include_url=False)[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    where = where.lstrip(".") or "settings"
    message = _PLAIN_MESSAGES.get(error["type"], str(error["msg"]).removeprefix("Value error, "))
    if error["type"] != "value_error" and error["type"] not in _PLAIN_MESSAGES:
        message = f"{message} (got {error['input']!r})"
    return message if message.startswith(where) else f"{where}: {message}"
