"""Micro-benchmark of the business-hours arithmetic (CONTRACT §6.3); not a test.

    .venv/bin/python -m bench.business_hours [--calls 200000]

Prints microseconds per call for typical intervals: a first response within the
same day, a resolution over a weekend, a month, and one that spans a year, through
``business_seconds`` (datetimes) and through ``BusinessCalendar.micros`` (epoch
microseconds, what a metrics query over many conversations uses). Each case runs on
warm caches (the zone's offset changes are found once per zone and year) and reports
the best of five rounds.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from schemas.workspace_text import parse_business_hours
from services.projections.domain.business_hours import business_calendar, business_seconds

ZONE = ZoneInfo("Europe/Berlin")
SCHEDULE = parse_business_hours("mon-fri 09:00-12:00 13:00-18:00, sat 10:00-14:00")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CASES = {
    "same day (12 min)": timedelta(minutes=12),
    "weekend (3 days)": timedelta(days=3, hours=2),
    "month (30 days)": timedelta(days=30),
    "year (400 days)": timedelta(days=400),
}


def per_call_us(function: Callable[[int], object], calls: int, rounds: int = 5) -> float:
    """The best of ``rounds`` runs (the machine is shared: the best run is the least
    disturbed one)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for index in range(calls // rounds):
            function(index)
        best = min(best, (time.perf_counter() - started) / (calls // rounds) * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls
    generator = random.Random(7)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    starts = [base + timedelta(seconds=generator.randrange(2 * 365 * 86_400))
              for _ in range(4096)]
    calendar = business_calendar(SCHEDULE, ZONE)
    print(f"{'interval':<20} {'business_seconds':>18} {'calendar.micros':>16}  (µs per call)")
    for name, length in CASES.items():
        pairs = [(start, start + length) for start in starts]
        micros = [((s - EPOCH) // timedelta(microseconds=1),
                   (e - EPOCH) // timedelta(microseconds=1)) for s, e in pairs]
        for start, end in pairs:  # warm the zone's offset table
            business_seconds(start, end, SCHEDULE, ZONE)
        through_datetimes = per_call_us(
            lambda i, pairs=pairs: business_seconds(*pairs[i & 4095], SCHEDULE, ZONE), calls)
        through_micros = per_call_us(
            lambda i, micros=micros: calendar.micros(*micros[i & 4095]), calls)
        print(f"{name:<20} {through_datetimes:>18.2f} {through_micros:>16.2f}")
    baseline = per_call_us(lambda i: starts[i & 4095], calls)
    print(f"(loop overhead {baseline:.2f} µs per call, included above)")


if __name__ == "__main__":
    main()
