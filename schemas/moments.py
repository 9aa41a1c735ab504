"""Instants as epoch microseconds: how stored rows and the read model keep times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch, exact (no float rounding)."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def format_micros(micros: int | None) -> str | None:
    """RFC 3339 UTC with ``Z``; fractional seconds only when there are some."""
    if micros is None:
        return None
    seconds, frac = divmod(micros, 1_000_000)
    moment = datetime(1970, 1, 1) + timedelta(seconds=seconds)  # naive UTC, any year
    text = moment.isoformat(timespec="seconds")  # always a 4-digit year, unlike %Y
    return f"{text}.{frac:06d}Z" if frac else f"{text}Z"
