"""A/B of PostgreSQL server settings: WAL, checkpoints, CPU per event and p99 at 5,000/s.

    export BONYCHAT_INFRA_STATE=/tmp/me/state BONYCHAT_PG_PORT=25432   # a PRIVATE cluster
    BONYCHAT_INFRA_STATE=... BONYCHAT_PG_PORT=... infra/postgres/start.sh
    export BONYCHAT_DATABASE_URL=postgresql://bonychat@127.0.0.1:25432/bonychat
    python -m bench.pgsettings_ab --events 200000 --seconds 30 \\
        --variant before:max_wal_size=1GB --variant after

A variant is ``NAME[@CHECKOUT][:VAR=VALUE,...]`` as in ``bench.ab``; a lower-case VAR
is a PostgreSQL server setting, set with ``ALTER SYSTEM`` (after ``ALTER SYSTEM
RESET ALL``: a variant without settings runs on what ``infra/postgres/start.sh``
wrote) before the cluster is restarted (``infra/postgres/ctl.sh restart``), so it
must be a cluster of your own: the script refuses the state dir of a checkout
(``infra/.state``). For each variant, in fresh topics and schema, after a
``CHECKPOINT`` (every variant starts at the same point of the checkpoint cycle):

1. a backlog of ``--events`` drained by the four services (``bench.e2e.run_e2e``);
2. ``--rate`` events/s offered for ``--seconds`` (``bench.latency``, with the
   database watch: what PostgreSQL did in each second).

For each part: WAL bytes, WAL records and full-page images per event
(``pg_stat_wal``), checkpoints (timed / requested) and the buffers they wrote
(``pg_stat_bgwriter``), autovacuum and autoanalyze runs on the schema's tables,
and CPU µs per event of PostgreSQL (every process of the cluster) and of the
services; for the rate part p50 / p99 / max and the seconds whose p99 was over
250 ms. Writes ``bench/results/pgsettings-ab-<timestamp>.json``. The settings in
the end are left as ``ALTER SYSTEM RESET ALL`` left them (the cluster restarted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

from . import e2e, latency, limits, pgstat
from .ab import parse_variant
from .report import RESULTS, by_second_lines
from .run import ROOT, Bench, infra_env, latency_lines

_WAL = "SELECT wal_records, wal_fpi, wal_bytes::bigint FROM pg_stat_wal"
_BGWRITER = ("SELECT checkpoints_timed, checkpoints_req, buffers_checkpoint, buffers_clean, "
             "buffers_backend FROM pg_stat_bgwriter")
_VACUUM = ("SELECT relname, autovacuum_count, autoanalyze_count FROM pg_stat_user_tables "
           "WHERE schemaname = %s")
_SETTING = re.compile(r"^[a-z_][a-z0-9_.]*$")


def split_settings(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(server settings, environment) of a variant: lower-case names are settings."""
    settings = {k: v for k, v in env.items() if _SETTING.match(k)}
    return settings, {k: v for k, v in env.items() if k not in settings}


def private_cluster() -> Path:
    state = os.environ.get("BONYCHAT_INFRA_STATE", "")
    if not state or Path(state).resolve().name == ".state":
        raise SystemExit("pgsettings_ab restarts PostgreSQL: set BONYCHAT_INFRA_STATE to a "
                         "private state dir (not a checkout's infra/.state) and "
                         "BONYCHAT_DATABASE_URL / BONYCHAT_PG_PORT to that cluster")
    return Path(state)


def apply(url: str, settings: dict[str, str]) -> dict[str, str]:
    """``ALTER SYSTEM`` the settings (the rest reset), restart, checkpoint; what is in force."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM RESET ALL")
        for name, value in settings.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(
                sql.Identifier(name), sql.Literal(value)))
    subprocess.run([str(ROOT / "infra" / "postgres" / "ctl.sh"), "restart", "-m", "fast"],
                   check=True)
    names = ["max_wal_size", "min_wal_size", "checkpoint_timeout",
             "checkpoint_completion_target", "wal_compression", "wal_buffers",
             "shared_buffers", "autovacuum_vacuum_cost_limit", *settings]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        shown = {n: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(n))).fetchone()
                 for n in dict.fromkeys(names)}
    return {n: str(row[0]) if row else "" for n, row in shown.items()}


def snapshot(url: str, schema: str) -> dict[str, Any]:
    time.sleep(0.6)  # backends report their statistics at most every 0.5 s or so
    with psycopg.connect(url, autocommit=True) as conn:
        wal = conn.execute(_WAL).fetchone() or (0, 0, 0)
        bg = conn.execute(_BGWRITER).fetchone() or (0, 0, 0, 0, 0)
        vac = conn.execute(_VACUUM, (schema,)).fetchall()
    return {"wal_records": int(wal[0]), "wal_fpi": int(wal[1]), "wal_bytes": int(wal[2]),
            "checkpoints_timed": int(bg[0]), "checkpoints_req": int(bg[1]),
            "buffers_checkpoint": int(bg[2]), "buffers_clean": int(bg[3]),
            "buffers_backend": int(bg[4]),
            "autovacuum": {str(r[0]): int(r[1]) for r in vac if r[1]},
            "autoanalyze": {str(r[0]): int(r[2]) for r in vac if r[2]}}


def delta(before: dict[str, Any], after: dict[str, Any], events: int) -> dict[str, Any]:
    out: dict[str, Any] = {k: after[k] - before[k] for k in after if isinstance(after[k], int)}
    out["wal_bytes_per_event"] = round(out["wal_bytes"] / events)
    out["wal_fpi_per_event"] = round(out["wal_fpi"] / events, 3)
    out["wal_records_per_event"] = round(out["wal_records"] / events, 2)
    for kind in ("autovacuum", "autoanalyze"):
        out[kind] = {t: n - before[kind].get(t, 0) for t, n in after[kind].items()
                     if n - before[kind].get(t, 0)}
    return out


def per_event(used: dict[str, float], events: int) -> dict[str, float]:
    """PostgreSQL CPU µs per event by whom it served (``bench.pgstat.by_client``); the
    processes that exited before the end (autovacuum workers) are not in it."""
    return {k: round(v / events, 2) for k, v in sorted(used.items(), key=lambda i: -i[1])
            if v / events >= 0.05}


async def one(name: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    bootstrap, url = infra_env()
    settings, env = split_settings(env)
    in_force = apply(url, settings)
    contacts = max(args.events // 10, 1)
    records, expected = Bench("full").data(args.events, contacts)
    world = e2e.World(bootstrap, url, 4, extra_env=env)
    load = os.getloadavg()[0]
    try:
        await world.create()
        await limits.publish(bootstrap, world.topics.gateway, records)
        port = int(psycopg.conninfo.conninfo_to_dict(url).get("port") or 5432)
        start, processes = snapshot(url, world.schema), pgstat.postgres_processes()
        run = await e2e.run_e2e(world, records, expected, interval=0.5)
        backlog_by = pgstat.by_client(world, port, processes)
        middle, processes = snapshot(url, world.schema), pgstat.postgres_processes()
        timed = latency.latency_records(
            latency_lines(int(args.rate * args.seconds), contacts, 5, 11), b"pgs-")
        phase = await latency.measure_latency(world, timed, args.rate, database_watch=True)
        rate_by = pgstat.by_client(world, port, processes)
        end = snapshot(url, world.schema)
        world.stop()
    finally:
        await world.destroy()
    over = [s["second"] for s in phase["by_second"] if s["p99_ms"] > 250]
    return {"name": name, "settings": in_force, "env": env, "loadavg_before": round(load, 2),
            "backlog": {"events_per_s": run["events_per_s"],
                        "cpu_us_per_event": run["cpu_us_per_event"],
                        **delta(start, middle, expected.lines),
                        "postgres_us_per_event_by_process": per_event(backlog_by, expected.lines)},
            "rate": {"p50_ms": phase["p50_ms"], "p99_ms": phase["p99_ms"],
                     "max_ms": phase["max_ms"], "seconds_over_250ms": over,
                     "cpu_us_per_event": phase["cpu_us_per_event"],
                     **delta(middle, end, len(timed)),
                     "postgres_us_per_event_by_process": per_event(rate_by, len(timed)),
                     "by_second": phase["by_second"], "database_log": phase["database_log"]}}


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["| variant | part | PG CPU µs/ev | pipeline µs/ev | WAL B/ev | FPI/ev | "
             "checkpoints t/r | autovacuum | p50 / p99 / max ms | s>250 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        for part in ("backlog", "rate"):
            p = r[part]
            cpu = p["cpu_us_per_event"]
            lat = (f"{p['p50_ms']} / {p['p99_ms']} / {p['max_ms']}" if part == "rate"
                   else f"{p['events_per_s']} ev/s")
            lines.append(
                f"| {r['name']} | {part} | {cpu.get('postgres', 0):.1f} | "
                f"{cpu.get('pipeline', 0):.1f} | {p['wal_bytes_per_event']} | "
                f"{p['wal_fpi_per_event']} | {p['checkpoints_timed']}/{p['checkpoints_req']} | "
                f"{sum(p['autovacuum'].values())} | {lat} | "
                f"{len(p.get('seconds_over_250ms', []))} |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    private_cluster()
    runs: list[dict[str, Any]] = []
    try:
        for round_ in range(args.rounds):
            order = args.variant if round_ % 2 == 0 else list(reversed(args.variant))
            for text in order:
                name, env = parse_variant(text)
                print(f"pgsettings_ab [{time.strftime('%H:%M:%S')}]: round {round_ + 1} {name}",
                      flush=True)
                found = await one(name, env, args)
                found["round"] = round_ + 1
                runs.append(found)
                print(table([found]).split("\n", 2)[2], flush=True)
                for part in ("backlog", "rate"):
                    print(f"  PostgreSQL µs/event by process, {part}:",
                          found[part]["postgres_us_per_event_by_process"], flush=True)
                print("\n".join(by_second_lines(f"{args.rate}/s", found["rate"])), flush=True)
    finally:
        apply(infra_env()[1], {})
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True,
                        help="NAME[@CHECKOUT][:setting=value,VAR=VALUE,...]")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    runs = asyncio.run(main_async(args))
    print(table(runs))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"pgsettings-ab-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_bytes(orjson.dumps({"args": vars(args), "runs": runs},
                                 option=orjson.OPT_INDENT_2))
    print(f"pgsettings_ab: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
