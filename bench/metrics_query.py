"""Metrics query latency on PostgreSQL: the Python reference against the SQL aggregates.

    python -m bench.metrics_query --conversations 1000000 --requests 20 \
        --schema bench_1m --sqlite /tmp/bench-1m.db

Fills a fresh schema with the synthetic conversations of ``bench.pages`` (one
workspace, 90 days up to now), then, per grouping over the last 365 days and for
the 30-day day report, times (a) the Python path split into reading the facts
(``store.facts``) and ``compute``, and (b) ``store.aggregate_metrics`` (CONTRACT §3
aggregated in PostgreSQL; the choice: ``metrics_of``,
``services/projections/application/queries.py``), checks both
answers are equal, and prints p50 / p99 (ms). ``--python-requests 0`` times the
store's answer only; ``--schema NAME`` keeps the filled schema for the next run
(loading 1M rows takes minutes); ``--sqlite PATH`` also times the embedded store
(the Python path) on the same rows. Writes ``bench/results/metrics-query-latest.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.pages import filled_stores, percentiles, rows, write_result
from services.composition import open_stores
from services.conversation.application.ports import Position
from services.projections.application.queries import metrics_of as metrics
from services.projections.domain.metrics import GROUPINGS, MetricsQuery, compute, fact_window
from services.settings import Settings

WS = "ws_bench"


def timed(requests: int, call: Any) -> tuple[list[float], Any]:
    samples, result = [], None
    for _ in range(requests):
        started = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - started)
    return samples, result


def queries() -> dict[str, MetricsQuery]:
    """Each grouping over the last 365 days, and the day report of the last 30."""
    today = datetime.now(UTC).date()
    chosen = {f"{g}_365d": MetricsQuery(WS, g, "Europe/Madrid", today - timedelta(days=364),
                                        today) for g in GROUPINGS}
    chosen["day_30d"] = MetricsQuery(WS, "day", "Europe/Madrid", today - timedelta(days=29),
                                     today)
    return chosen


def measure(store: Any, requests: int, python_requests: int,
            only: list[str] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, query in queries().items():
        if only and name not in only:
            continue
        window = fact_window(query)
        if not python_requests:
            sql, answer = timed(requests, lambda: store.aggregate_metrics(query, window))  # noqa: B023
            found[name] = {"sql": percentiles(sql)}
            print(f"  {name:16} sql p50 {found[name]['sql']['p50_ms']} ms p99 "
                  f"{found[name]['sql']['p99_ms']} ms", flush=True)
            continue
        fetch, facts = timed(python_requests, lambda: list(store.facts(WS, window)))  # noqa: B023
        python, expected = timed(python_requests, lambda: compute(query, facts))  # noqa: B023
        sql, answer = timed(requests, lambda: store.aggregate_metrics(query, window))  # noqa: B023
        assert answer == expected, name
        found[name] = {"facts": len(facts), "python_fetch": percentiles(fetch),
                       "python_compute": percentiles(python), "sql": percentiles(sql)}
        print(f"  {name:16} fetch p50 {found[name]['python_fetch']['p50_ms']} ms, compute p50 "
              f"{found[name]['python_compute']['p50_ms']} ms -> sql p50 "
              f"{found[name]['sql']['p50_ms']} ms p99 {found[name]['sql']['p99_ms']} ms",
              flush=True)
    return found


def measure_sqlite(path: str, conversations: int, requests: int,
                   only: list[str] | None) -> dict[str, Any]:
    """The embedded store's metrics (facts read from SQLite, ``compute`` in Python)."""
    stores = open_stores(Settings(database_url=path))
    try:
        store = stores.read_models
        if not store.conversations(WS, "c0"):  # a new file
            for number, chunk in enumerate(rows(conversations)):
                store.save(chunk, Position("projection:bench", number + 1))
            print(f"{conversations:,} conversations saved to {path}", flush=True)
        found: dict[str, Any] = {}
        for name, query in queries().items():
            if only and name not in only:
                continue
            samples, _ = timed(requests, lambda: metrics(store, query))  # noqa: B023
            found[name] = percentiles(samples)
            print(f"  sqlite {name:16} p50 {found[name]['p50_ms']} ms p99 "
                  f"{found[name]['p99_ms']} ms", flush=True)
        return found
    finally:
        stores.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--python-requests", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="query names, e.g. day_365d channel_365d")
    parser.add_argument("--schema", help="reuse this schema when it already holds the rows "
                        "(filled and kept otherwise); default: a fresh one, dropped after")
    parser.add_argument("--sqlite", metavar="PATH", help="also time the embedded store (the "
                        "Python path) on this SQLite file, filled with the same rows if new")
    parser.add_argument("--sqlite-requests", type=int, default=3)
    args = parser.parse_args(argv)
    base = os.environ.get("BONYCHAT_DATABASE_URL", "")
    if not base.startswith("postgresql"):
        parser.error("set BONYCHAT_DATABASE_URL to PostgreSQL (make infra-up; infra/local.env)")
    with filled_stores(base, args.schema, "bench_metrics", args.conversations) as (stores, _):
        load = os.getloadavg()[0]
        result = {"conversations": args.conversations, "load_average_1m": round(load, 1),
                  "queries": measure(stores.read_models, args.requests, args.python_requests,
                                     args.only),
                  "sqlite": (None if not args.sqlite else
                             measure_sqlite(args.sqlite, args.conversations,
                                            args.sqlite_requests, args.only)),
                  "at": datetime.now(UTC).isoformat(timespec="seconds")}
    write_result("metrics-query-latest.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
