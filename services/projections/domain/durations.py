"""Durations as every output shows them (CONTRACT §6.6).

A duration leaves the service as seconds rounded to ``DURATION_DECIMALS``
decimals, in JSON and CSV alike, over the CLI and HTTP alike. Statistics are
computed from the exact values and rounded only here, at the edge, so a sum of
rounded values never drifts; every duration field of a row or a metrics
statistic goes through ``seconds`` or ``duration_stats``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Final

DURATION_DECIMALS: Final = 3
STAT_KEYS: Final[tuple[str, ...]] = ("count", "avg", "p50", "p90", "min", "max")


def seconds(value: float | None) -> float | None:
    """A duration in seconds as shown: rounded to 3 decimals, ``None`` stays ``None``."""
    if value is None:
        return None
    shown = round(float(value), DURATION_DECIMALS)
    return shown + 0.0  # -0.0 -> 0.0


def micros_to_seconds(micros: int | None) -> float | None:
    """Whole microseconds (never negative) as shown seconds."""
    return None if micros is None else seconds(max(0, micros) / 1_000_000)


def percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy default, percentile_cont)."""
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def exact_stats(values: Iterable[float]) -> dict[str, Any]:
    """count, avg, p50, p90, min, max of the values, unrounded (null when empty)."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "avg": None, "p50": None, "p90": None, "min": None, "max": None}
    return {
        "count": len(ordered), "avg": math.fsum(ordered) / len(ordered),
        "p50": percentile(ordered, 0.5), "p90": percentile(ordered, 0.9),
        "min": ordered[0], "max": ordered[-1],
    }


def duration_stats(values: Iterable[float]) -> dict[str, Any]:
    """The six statistics of CONTRACT §3 over durations in seconds, as shown."""
    stats = exact_stats(values)
    return {key: stats[key] if key == "count" else seconds(stats[key]) for key in STAT_KEYS}
