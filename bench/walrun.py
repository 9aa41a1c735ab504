"""WAL and statements of PostgreSQL while another benchmark runs (e.g. ``bench.lowload``).

    python -m bench.walrun --events 20000 -- python -m bench.lowload --variant after \\
        --rounds 1 --rates 1000 --seconds 15 --warmup 5 --idle 3

Resets ``pg_stat_statements`` (the cluster must load it: a PRIVATE cluster, as for
``bench.pgstat``), runs the command, then prints the statements by execution time and
the WAL written meanwhile per event (``--events``: the gateway events the command
offers, for ``bench.lowload`` its warm-up plus each rate's seconds) by relation and
record type (``bench.pgstat.wal_by_relation``; relations of a schema dropped by then
show as their file number). Writes ``bench/results/walrun-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import orjson
import psycopg

from .pgstat import lsn, wal_by_relation
from .report import RESULTS
from .run import infra_env

_STATEMENTS = ("SELECT calls, total_exec_time, rows, query FROM pg_stat_statements "
               "ORDER BY total_exec_time DESC LIMIT %s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    _, url = infra_env()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")
        start = lsn(conn)
    code = subprocess.run(command, check=False).returncode
    with psycopg.connect(url, autocommit=True) as conn:
        end = lsn(conn)
        statements = conn.execute(_STATEMENTS, (args.top,)).fetchall()
        wal = wal_by_relation(conn, start, end, args.events)
    result = {"events": args.events, "command": command, "wal_by_relation": wal,
              "wal_records_per_event": round(sum(r["records_per_event"] for r in wal), 3),
              "wal_bytes_per_event": round(sum(r["bytes_per_event"] for r in wal), 1),
              "statements": [{"calls": c, "exec_ms": round(t, 1), "rows": r,
                              "query": " ".join(str(q).split())[:400]}
                             for c, t, r, q in statements]}
    print("| calls | execution ms | rows | statement |\n| --- | --- | --- | --- |")
    for s in result["statements"]:
        print(f"| {s['calls']} | {s['exec_ms']} | {s['rows']} | `{s['query'][:140]}` |")
    print(f"WAL per event: {result['wal_records_per_event']} records, "
          f"{result['wal_bytes_per_event']} bytes")
    for r in wal[:args.top]:
        print(f"| {r['records_per_event']} | {r['bytes_per_event']} | {r['relation']} "
              f"| {r['record']} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"walrun-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"walrun: wrote {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
