"""A/B: does a VACUUM of the events table hold the pipeline up, right after a backlog?

    python -m bench.vacuum_ab --variant before@/path/to/old-checkout --variant after \\
        --events 200000 --vacuum-at 3

For each variant (fresh topics and schema, its four services as separate processes):
publish a backlog of ``--events``, drain it (``bench.e2e.run_e2e``), then offer
1,000 events/s for ``--seconds`` (``bench.latency.measure_latency`` with the
database watch) while, ``--vacuum-at`` seconds in, a second session runs ``VACUUM
(ANALYZE)`` on ``stored_events`` throttled as autovacuum is (``vacuum_cost_delay``
2 ms): the lock autovacuum takes, at a moment of our choosing instead of the
launcher's. Prints latency by second next to what PostgreSQL did, writes
``bench/results/vacuum-ab-<timestamp>.json``. Why: docs/runtime.md, "Latency right
after a backlog".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson
import psycopg
from psycopg import sql

from . import e2e, latency, limits
from .ab import parse_variant
from .report import RESULTS, by_second_lines
from .run import Bench, infra_env, latency_lines


async def vacuum_later(world: e2e.World, delay: float) -> float:
    """``VACUUM (ANALYZE)`` of the events table after ``delay`` s; its seconds."""
    await asyncio.sleep(delay)
    async with await psycopg.AsyncConnection.connect(world.database_url,
                                                     autocommit=True) as conn:
        await conn.execute("SET vacuum_cost_delay = '2ms'")  # autovacuum's throttle
        started = time.perf_counter()
        await conn.execute(sql.SQL("VACUUM (ANALYZE) {}.stored_events").format(
            sql.Identifier(world.schema)))
        return round(time.perf_counter() - started, 2)


async def one(env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    bootstrap, url = infra_env()
    contacts = max(args.events // 10, 1)
    records, expected = Bench("full").data(args.events, contacts)
    world = e2e.World(bootstrap, url, 4, extra_env=env)
    try:
        await world.create()
        await limits.publish(bootstrap, world.topics.gateway, records)
        run = await e2e.run_e2e(world, records, expected, interval=0.5)
        timed = latency.latency_records(
            latency_lines(int(1000 * args.seconds), contacts, 5, 13), b"low-")
        vacuum = asyncio.create_task(vacuum_later(world, args.vacuum_at))
        low = await latency.measure_latency(world, timed, 1000, database_watch=True)
        took = await vacuum
        world.stop()
    finally:
        await world.destroy()
    return {"e2e_events_per_s": run["events_per_s"], "vacuum_seconds": took,
            **{k: low[k] for k in ("p50_ms", "p99_ms", "max_ms", "by_second",
                                   "database_log")}}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {}
    for name, env in (parse_variant(v) for v in args.variant):
        print(f"vacuum_ab [{time.strftime('%H:%M:%S')}]: {name}", flush=True)
        runs[name] = found = await one(env, args)
        print(f"  {name}: VACUUM {found['vacuum_seconds']} s; latency p50 {found['p50_ms']}, "
              f"p99 {found['p99_ms']}, max {found['max_ms']} ms", flush=True)
        print("\n".join(by_second_lines("1,000/s", found)), flush=True)
    return {"args": vars(args), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True,
                        help="NAME[@CHECKOUT][:VAR=VALUE,...] (bench.ab)")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--vacuum-at", type=float, default=3)
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"vacuum-ab-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"vacuum_ab: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
