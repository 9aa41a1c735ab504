"""The readable texts of the ``bonychat workspace`` CLI (CONTRACT §6.1) and back.

Business hours (``--business-hours SPEC``)::

    mon-fri 09:00-18:00, sat 10:00-14:00
    mon-fri 09:00-12:00 13:00-17:30, sat 10:00-14:00
    daily 00:00-24:00
    none                                     (no schedule: always open)

A SPEC is comma-separated parts; a part is a day set followed by one or more
``HH:MM-HH:MM`` ranges (``H:MM`` is accepted, ``24:00`` may end a range). A day set is
one day (``mon`` or ``monday``, any case), a range ``mon-fri`` or one of ``daily``
(mon-sun), ``weekdays`` (mon-fri), ``weekend`` (sat-sun). A range that wraps the week
is read forward: ``fri-mon`` = fri, sat, sun, mon. Overnight hours are two parts
(``fri 22:00-24:00, sat 00:00-06:00``): a range whose end is not after its start is an
error, as are overlapping ranges of one day.

Durations (``--auto-close-after DURATION``): ``45s``, ``90m``, ``24h``, ``2d``, ``1w``,
combinations such as ``1h30m``, plain seconds (``3600``), or ``off`` (never).

Errors raise :class:`~schemas.workspace.SettingsError` (a ``ValueError``) whose message
is one line naming the problem.
"""

from __future__ import annotations

import re
from itertools import groupby
from typing import Final

from pydantic import ValidationError

from schemas.workspace import (
    DAY_INDEX,
    DAYS,
    BusinessInterval,
    Schedule,
    SettingsError,
    canonical_schedule,
    one_line,
)

_FULL_NAMES: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                      "sunday")
_DAY_NAMES: Final[dict[str, int]] = {
    **DAY_INDEX, **{name: index for index, name in enumerate(_FULL_NAMES)}}
_DAY_SETS: Final[dict[str, tuple[int, ...]]] = {
    "daily": tuple(range(7)), "weekdays": tuple(range(5)), "weekend": (5, 6)}
_RANGE: Final = re.compile(r"([0-9]{1,2}:[0-9]{2})-([0-9]{1,2}:[0-9]{2})")
_DURATION_PART: Final = re.compile(r"([0-9]+)([wdhms])")
_SECONDS: Final = re.compile(r"[0-9]+")
_UNIT_SECONDS: Final[dict[str, int]] = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_NO_SCHEDULE: Final = frozenset({"none"})
_NO_DURATION: Final = frozenset({"off", "none", "never"})


def parse_business_hours(spec: str) -> Schedule | None:
    """``"mon-fri 09:00-18:00, sat 10:00-14:00"`` -> canonical schedule; ``"none"`` -> None."""
    text = re.sub(r"\s*-\s*", "-", spec.strip().lower())
    if text in _NO_SCHEDULE:
        return None
    if not text:
        raise SettingsError("business hours: empty text (use `none` for always open)")
    intervals: list[BusinessInterval] = []
    for part in text.split(","):
        intervals.extend(_parse_part(part.strip()))
    return canonical_schedule(tuple(intervals))


def _parse_part(part: str) -> list[BusinessInterval]:
    words = part.split()
    if len(words) < 2:
        raise SettingsError(
            f"business hours: {part!r} should be days then HH:MM-HH:MM (e.g. mon-fri 09:00-18:00)")
    days = _parse_days(words[0])
    intervals = []
    for word in words[1:]:
        match = _RANGE.fullmatch(word)
        if match is None:
            raise SettingsError(f"business hours: {word!r} in {part!r} is not HH:MM-HH:MM")
        start, end = (value.zfill(5) for value in match.groups())
        for day in days:
            try:
                intervals.append(BusinessInterval(day=DAYS[day], start=start, end=end))
            except ValidationError as exc:
                raise SettingsError(f"business hours: {part!r}: {_reason(exc)}") from None
    return intervals


def _reason(exc: ValidationError) -> str:
    message = one_line(exc)
    prefix = ("start: ", "end: ", "settings: ")
    return message.split(": ", 1)[1] if message.startswith(prefix) else message


def _parse_days(word: str) -> tuple[int, ...]:
    if word in _DAY_SETS:
        return _DAY_SETS[word]
    first, _, last = word.partition("-")
    start, stop = _day(first, word), _day(last or first, word)
    if stop < start:  # wraps the week: fri-mon = fri sat sun mon
        stop += 7
    return tuple(day % 7 for day in range(start, stop + 1))


def _day(name: str, word: str) -> int:
    if name not in _DAY_NAMES:
        raise SettingsError(
            f"business hours: unknown day {name!r} in {word!r} (mon, tue, wed, thu, fri, sat, sun,"
            " or daily, weekdays, weekend)")
    return _DAY_NAMES[name]


def format_business_hours(schedule: Schedule | None) -> str:
    """The inverse of :func:`parse_business_hours`: days with the same hours joined into
    ranges (``mon-fri 09:00-18:00, sat 10:00-14:00``); ``None`` -> ``"none"``."""
    if schedule is None:
        return "none"
    hours: list[tuple[str, ...]] = [() for _ in DAYS]
    for interval in canonical_schedule(schedule) or ():
        hours[interval.day_index] += (f"{interval.start}-{interval.end}",)
    parts = []
    index = 0
    for ranges, run in groupby(hours):
        length = len(list(run))
        if ranges:
            first, last = DAYS[index], DAYS[index + length - 1]
            days = first if length == 1 else f"{first}-{last}"
            parts.append(f"{days} {' '.join(ranges)}")
        index += length
    return ", ".join(parts)


def parse_duration(text: str) -> int | None:
    """``"90m"``, ``"24h"``, ``"2d"``, ``"1h30m"``, ``"45s"``, ``"3600"`` -> seconds;
    ``"off"`` -> None."""
    word = re.sub(r"\s+", "", text.strip().lower())
    if word in _NO_DURATION:
        return None
    if _SECONDS.fullmatch(word):
        return int(word)
    if not word or _DURATION_PART.sub("", word):
        raise SettingsError(
            f"duration {text.strip()!r}: expected e.g. 90m, 24h, 2d, 45s, seconds, or off")
    return sum(int(count) * _UNIT_SECONDS[unit] for count, unit in _DURATION_PART.findall(word))


def format_duration(seconds: int | None) -> str:
    """The inverse of :func:`parse_duration`, in the largest whole unit: 5400 -> ``"90m"``,
    86400 -> ``"1d"``; ``None`` -> ``"off"``."""
    if seconds is None:
        return "off"
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"
