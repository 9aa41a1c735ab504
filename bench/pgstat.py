"""PostgreSQL's own CPU per gateway event, broken down by statement and by client.

    python -m bench.pgstat --events 100000     # BONYCHAT_DATABASE_URL: a PRIVATE cluster
    python -m bench.pgstat --checkout /path/to/other-checkout   # that code's services

Runs one Kafka e2e backlog (``bench.e2e.run_e2e``: ingest, conversation, relay and
projections as separate processes) against a PostgreSQL cluster that loads
``pg_stat_statements`` (``shared_preload_libraries``; the extension is created here),
so it must be a cluster of your own: the statistics are reset before the run. Prints

- per statement: calls and execution time per gateway event (µs), rows per call;
- WAL: records, full-page images and bytes per gateway event (``pg_stat_wal``) and, from
  ``pg_waldump`` of the run's WAL (the data directory must be readable: run as root or
  the cluster's owner), records and bytes per event by relation and record type;
- per client: the CPU of each PostgreSQL backend (``/proc``) attributed to the service
  process holding the other end of its TCP connection (``ss -tnp``), the bench harness
  (its completion polling) and PostgreSQL's background processes (WAL writer,
  checkpointer, autovacuum...), per gateway event.

Execution time is wall time inside the executor (not parsing, planning, the protocol
or the commit); the per-client CPU is all of it. Backends that disconnected before
the end are not in the per-client figures (the services keep theirs open).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import psycopg

from . import e2e, embedded, limits, procs
from .report import RESULTS
from .run import infra_env

TICK_US = 1_000_000 / os.sysconf("SC_CLK_TCK")
_STATEMENTS = (
    "SELECT query, calls, total_exec_time, rows FROM pg_stat_statements "
    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "ORDER BY total_exec_time DESC")

#: rows written per table (the statistics reach the view within a second or so)
_TABLES = (
    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, "
    "round(pg_total_relation_size(relid) / 1048576.0, 1)::float FROM pg_stat_user_tables "
    "WHERE schemaname = %s ORDER BY relname")


#: per relation of the schema (tables and their indexes): size, and the buffer hits and
#: reads (a read = the page was not in shared_buffers: from the OS cache or disk) of the run
_BUFFERS = (
    "SELECT c.relname, c.relkind::text, round(pg_relation_size(c.oid) / 1048576.0, 1)::float, "
    "COALESCE(t.heap_blks_hit, i.idx_blks_hit, 0), COALESCE(t.heap_blks_read, i.idx_blks_read, 0) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_statio_user_tables t ON t.relid = c.oid "
    "LEFT JOIN pg_statio_user_indexes i ON i.indexrelid = c.oid "
    "WHERE n.nspname = %s AND c.relkind IN ('r', 'i') ORDER BY 4 + 5 DESC")
#: buffers written by checkpoints, the background writer and the backends themselves
#: (a backend writes a dirty buffer it evicts when no clean one is free), checkpoints
_BGWRITER = ("SELECT checkpoints_timed + checkpoints_req, buffers_checkpoint, buffers_clean, "
             "buffers_backend, buffers_alloc FROM pg_stat_bgwriter")
_WAL = "SELECT wal_records, wal_fpi, wal_bytes::bigint FROM pg_stat_wal"
_WALDUMP_LINE = re.compile(
    r"rmgr: (\S+)\s+len \(rec/tot\):\s*\d+/\s*(\d+),.*?desc: (\S+)(.*)$")
_REL = re.compile(r"rel \d+/(\d+)/(\d+)")


def lsn(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    return str(row[0]) if row else "0/0"


def wal_by_relation(conn: psycopg.Connection[Any], start: str, end: str, events: int
                    ) -> list[dict[str, Any]]:
    """Records and bytes of WAL between two LSNs, per relation and record type, per event
    (``pg_waldump``; the relation of a record is its first block's)."""
    data = conn.execute("SHOW data_directory").fetchone()
    bindir = conn.execute("SELECT setting FROM pg_config WHERE name = 'BINDIR'").fetchone()
    if not (data and bindir):
        return []
    names = {str(node): f"{ns}.{rel}" for node, ns, rel in conn.execute(
        "SELECT c.relfilenode, n.nspname, c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relfilenode <> 0")}
    out = subprocess.run([f"{bindir[0]}/pg_waldump", "-p", f"{data[0]}/pg_wal", "-s", start,
                          "-e", end], capture_output=True, text=True, check=False).stdout
    found: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for line in out.splitlines():
        match = _WALDUMP_LINE.search(line)
        if not match:
            continue
        rmgr, size, kind, rest = match.groups()
        rel = _REL.search(rest)
        where = names.get(rel.group(2), f"relfilenode {rel.group(2)}") if rel else "-"
        entry = found[(where.split(".", 1)[-1], f"{rmgr} {kind}")]
        entry[0] += 1
        entry[1] += int(size)
    return [{"relation": rel, "record": kind, "records_per_event": round(n / events, 3),
             "bytes_per_event": round(b / events, 1)}
            for (rel, kind), (n, b) in sorted(found.items(), key=lambda i: -i[1][1])]


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def postgres_processes() -> dict[int, tuple[str, int]]:
    """pid -> (command line, CPU ticks) of every postgres process."""
    found: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            found[int(entry.name)] = (cmd, _ticks(int(entry.name)))
        except (OSError, ValueError, IndexError):
            continue
    return found


def by_client(world: e2e.World, port: int, before: dict[int, tuple[str, int]]
              ) -> dict[str, float]:
    """CPU µs of PostgreSQL processes since ``before``, grouped by who they serve."""
    names = {p.pid: p.name for p in world.processes}
    names[os.getpid()] = "bench harness"
    clients = procs.client_pids(port)
    used: dict[str, float] = defaultdict(float)
    for pid, (cmd, ticks) in postgres_processes().items():
        delta = (ticks - before.get(pid, (cmd, 0))[1]) * TICK_US
        match = re.search(r"\((\d+)\)", cmd)
        if match:
            owner = clients.get(int(match.group(1)))
            who = names.get(owner, f"other client {owner}") if owner else "gone client"
        else:
            who = "background: " + cmd.removeprefix("postgres: ").split(" ")[0]
        used[who] += delta
    return dict(used)


async def run(events: int, contacts: int, checkout: str = "") -> dict[str, Any]:
    bootstrap, database_url = infra_env()
    port = psycopg.conninfo.conninfo_to_dict(database_url).get("port") or 5432
    path = embedded.events_file(events, contacts or max(events // 10, 1))
    lines = path.read_bytes().splitlines()
    records, expected = limits.keyed(lines), e2e.expectation(path, lines)
    world = e2e.World(bootstrap, database_url, 4,
                      extra_env={procs.CHECKOUT: checkout} if checkout else {})
    try:
        await world.create()
        await limits.publish(bootstrap, world.topics.gateway, records)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT pg_stat_statements_reset()")
            conn.execute("SELECT pg_stat_reset_shared('wal')")
            conn.execute("SELECT pg_stat_reset_shared('bgwriter')")
            conn.execute("SELECT pg_stat_reset()")
            wal_start = lsn(conn)
        before = postgres_processes()
        load = os.getloadavg()[0]
        result = await e2e.run_e2e(world, records, expected, interval=0.2)
        clients = by_client(world, int(port), before)
        with psycopg.connect(database_url, autocommit=True) as conn:
            statements = conn.execute(_STATEMENTS).fetchall()
            tables = conn.execute(_TABLES, (world.schema,)).fetchall()
            wal_end = lsn(conn)
            wal = conn.execute(_WAL).fetchone()
            buffers = conn.execute(_BUFFERS, (world.schema,)).fetchall()
            bgwriter = conn.execute(_BGWRITER).fetchone()
            by_relation = wal_by_relation(conn, wal_start, wal_end, expected.lines)
        world.stop()
    finally:
        await world.destroy()
    n = expected.lines
    rows = [{"us_per_event": round(1000 * total / n, 3), "calls_per_1k_events":
             round(1000 * calls / n, 2), "rows_per_call": round(r / calls, 1) if calls else 0,
             "query": " ".join(str(q).split())[:400]}
            for q, calls, total, r in statements]
    return {"events": n, "loadavg_before": round(load, 2), "events_per_s":
            result["events_per_s"], "cpu_us_per_event": result["cpu_us_per_event"],
            "postgres_us_per_event_by_client": {k: round(v / n, 2) for k, v in
                                                sorted(clients.items(), key=lambda i: -i[1])},
            "wal_per_event": dict(zip(("records", "full_page_images", "bytes"),
                                      (round(v / n, 3) for v in wal), strict=True)) if wal else {},
            "wal_by_relation": by_relation,
            "tables": {str(t): {"inserted": i, "updated": u, "hot_updated": h, "mib": m}
                       for t, i, u, h, m in tables},
            "statements": rows,
            "buffers": [{"relation": r, "kind": k, "mib": m, "hits_per_event": round(h / n, 2),
                         "reads_per_event": round(rd / n, 3)} for r, k, m, h, rd in buffers],
            "bgwriter_per_1k_events": dict(zip(
                ("checkpoints", "checkpoint", "bgwriter", "backend", "allocated"),
                (round(1000 * v / n, 2) for v in bgwriter), strict=True)) if bgwriter else {}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=0, help="default: events / 10")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--checkout", default="",
                        help="run the services of another checkout (its .venv), as bench.ab")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.events, args.contacts, args.checkout))
    print(f"{result['events_per_s']} events/s; CPU µs/event {result['cpu_us_per_event']}")
    print("PostgreSQL CPU µs per event by client:", result["postgres_us_per_event_by_client"])
    print("rows written per table:", result["tables"])
    print("WAL per event:", result["wal_per_event"])
    print("| WAL records/event | bytes/event | relation | record |\n| --- | --- | --- | --- |")
    for r in result["wal_by_relation"][:args.top]:
        print(f"| {r['records_per_event']} | {r['bytes_per_event']} | {r['relation']} "
              f"| {r['record']} |")
    print("buffers written/allocated per 1k events:", result["bgwriter_per_1k_events"])
    print("| relation | kind | MiB | buffer hits/event | reads/event |\n"
          "| --- | --- | --- | --- | --- |")
    for r in result["buffers"][:args.top]:
        print(f"| {r['relation']} | {r['kind']} | {r['mib']} | {r['hits_per_event']} "
              f"| {r['reads_per_event']} |")
    total = sum(r["us_per_event"] for r in result["statements"])
    print(f"execution time of every statement: {total:.2f} µs per event")
    print("| µs/event | calls/1k events | rows/call | statement |\n| --- | --- | --- | --- |")
    for r in result["statements"][:args.top]:
        print(f"| {r['us_per_event']:.2f} | {r['calls_per_1k_events']} | {r['rows_per_call']} "
              f"| `{r['query'][:160]}` |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"pgstat-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"pgstat: wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
