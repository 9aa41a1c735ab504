"""Start-up timeline: from starting the services to the first stored event (issue 13).

    python -m bench.startup --layout serve --events 20000 --rounds 3
    python -m bench.startup --layout services --debug   # aiokafka's log lines too

Publishes a small backlog to fresh topics, starts the services exactly as
``bench.e2e.run_e2e`` does (``--layout serve``: one ``bonychat serve`` as a user
first runs it; ``services``: each its own ``serve --services X``), polls every
10 ms for the first tracked position (the first committed batch, what
``first_stored_s`` measures), reads the CPU the services' processes (workers
included) used until then, then stops them. Prints each log line's offset
from the start, per process, and the first stored time. A variant's checkout
(``--checkout PATH``) runs another version's ``bonychat`` as ``bench.ab`` does.
The machine is shared: compare only runs taken back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import json
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from . import e2e, embedded, limits, procs
from .run import infra_env


def timeline(log_path: Path, wall0: float) -> list[tuple[float, str]]:
    """(seconds since the start, message) of every JSON log line of one process."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            stamp = datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
            ts = calendar.timegm(stamp.timetuple()) + stamp.microsecond / 1e6
        except (ValueError, KeyError):
            continue
        pid = f" pid {entry['pid']}" if "pid" in entry else ""
        worker = f" [{entry['worker']}]" if "worker" in entry else ""
        out.append((ts - wall0, f"{entry.get('logger', '')}: {entry.get('msg', '')}{worker}{pid}"))
    return out


async def one(bootstrap: str, database_url: str, records: list[limits.Record], layout: str,
              env: dict[str, str]) -> dict[str, Any]:
    world = e2e.World(bootstrap, database_url, 4, extra_env=env)
    try:
        await world.create()
        await limits.publish(bootstrap, world.topics.gateway, records)
        async with e2e.Progress(world) as progress:
            await progress.query("SELECT 1")
            wall0, started = time.time(), time.perf_counter()
            e2e.start_services(world, 1, layout)
            first = await e2e.wait_for(world, progress.started, 120, 0.01, "the first event")
            first_s = first - started
            pids = {p.name: p.pid for p in world.processes}
            tree = [*pids.values(), *(pid for found in procs._children(pids).values()
                                      for pid in found)]
            cpu_s = sum(procs._cpu_ticks(pid) for pid in tree) / os.sysconf("SC_CLK_TCK")
            seen = await progress.tracked()
            counts = await progress.query("SELECT count(*) FROM {s}.stored_events")
        lines = {p.name: timeline(p.log_path, wall0) for p in world.processes}
        world.stop()
        return {"first_stored_s": round(first_s, 3), "cpu_s": round(cpu_s, 2), "logs": lines,
                "tracked": seen,
                "stored": counts[0][0]}
    finally:
        await world.destroy()


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    bootstrap, database_url = infra_env()
    path = embedded.events_file(args.events, max(args.events // 10, 1))
    records = limits.keyed(path.read_bytes().splitlines())
    env = {"BONYCHAT_LOG_LEVEL": "DEBUG"} if args.debug else {}
    env.update(item.split("=", 1) for item in args.env)
    if args.checkout:
        env[procs.CHECKOUT] = str(Path(args.checkout).resolve())
    runs = []
    for n in range(args.rounds):
        run = await one(bootstrap, database_url, records, args.layout, env)
        runs.append(run)
        print(f"round {n + 1}: first stored after {run['first_stored_s']:.3f} s, "
              f"{run['cpu_s']:.2f} s of CPU in the services "
              f"({run['stored']} stored, tracked {run['tracked']})")
        if args.verbose:
            for name, entries in run["logs"].items():
                for offset, message in entries:
                    if offset <= run["first_stored_s"] + 0.2:
                        print(f"  {offset:7.3f} {name}: {message[:150]}")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layout", choices=e2e.LAYOUTS, default="serve")
    parser.add_argument("--checkout", default="", help="run this checkout's bonychat")
    parser.add_argument("--debug", action="store_true", help="BONYCHAT_LOG_LEVEL=DEBUG")
    parser.add_argument("--env", action="append", default=[], metavar="VAR=VALUE",
                        help="a setting of the services (e.g. BONYCHAT_SERVE_WORKER_START=exec)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the log timeline")
    args = parser.parse_args(argv)
    runs = asyncio.run(main_async(args))
    firsts = [r["first_stored_s"] for r in runs]
    cpu = [r["cpu_s"] for r in runs]
    print(f"first stored: median {statistics.median(firsts):.3f} s of {firsts}; "
          f"CPU until then: median {statistics.median(cpu):.2f} s of {cpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
