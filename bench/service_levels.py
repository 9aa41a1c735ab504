"""Metrics computation cost with the §6 statistics (``python -m bench.service_levels``).

Measures :func:`services.projections.domain.metrics.compute` alone (no database) over N
synthetic conversation facts spread over a year, with and without a business-hours
schedule, per grouping: p50/p99 of R runs. The store's read of the facts comes on
top (``bench/pages.py`` measures the PostgreSQL side).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from zoneinfo import ZoneInfo

from schemas.workspace_text import parse_business_hours
from services.projections.domain.business_hours import business_calendar
from services.projections.domain.metrics import GROUPINGS, Fact, MetricsQuery, compute

YEAR_US = 365 * 86_400 * 1_000_000
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def facts(count: int, seed: int = 5) -> list[Fact]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        opened = START_US + rng.randrange(YEAR_US)
        first = opened + rng.randrange(60_000_000)
        response = first + rng.randrange(3_600_000_000) if rng.random() < 0.8 else None
        closed = opened + rng.randrange(86_400_000_000) if rng.random() < 0.9 else None
        out.append(Fact(opened, closed, rng.choice(["whatsapp", "sms", "facebook"]),
                        "contact", rng.choice(["user", "automation", "inactivity"])
                        if closed else None, f"agent-{rng.randrange(50)}",
                        f"team-{rng.randrange(5)}", first, response, rng.random() < 0.2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--groupings", default="day,assignee")
    args = parser.parse_args()
    data = facts(args.facts)
    calendar = business_calendar(parse_business_hours("mon-fri 09:00-18:00"),
                                 ZoneInfo("Europe/Berlin"))

    def clock(start: int, end: int) -> float:
        return calendar.micros(start, end) / 1_000_000

    for grouping in [g for g in args.groupings.split(",") if g in GROUPINGS]:
        for label, business in (("calendar", None), ("business", clock)):
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                compute(MetricsQuery("ws1", grouping, "Europe/Berlin"), data, business)
                times.append(time.perf_counter() - started)
            times.sort()
            p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
            print(f"{grouping:9s} {label:8s} facts={args.facts} runs={args.runs} "
                  f"p50={statistics.median(times):.3f}s p99={p99:.3f}s")


if __name__ == "__main__":
    main()
