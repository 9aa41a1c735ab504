"""Latency right after a backlog and once settled, on a backlog of your size.

    python -m bench.settled --events 100000 [--seconds 20] [--low-seconds 10]

``bench.run``'s main measurement alone (publish, e2e on a backlog of ``--events``,
1,000 then 5,000 events/s right after it, :func:`bench.settle.wait_settled`, both
rates again, replay, raw COPY), for a run shorter than ``make bench``'s 1M events.
Prints the table and writes ``bench/results/settled-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import replace

import orjson

from . import report, run


async def measure(args: argparse.Namespace) -> dict[str, object]:
    bench = run.Bench("quick")
    bench.p = replace(bench.p, events=args.events, contacts=max(args.events // 10, 1),
                      latency_seconds=args.seconds, low_rate_seconds=args.low_seconds,
                      settle_timeout_s=args.settle_timeout, poll_interval_s=0.5)
    bench.results["mode"] = "settled"
    bench.results["params"] = {**bench.results["params"], **vars(args)}
    await bench.guarded("e2e/latency/settled", bench.main_world)
    bench.results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    bench.results["targets"] = report.evaluate(bench.results)
    return bench.results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20, help="at 5,000/s")
    parser.add_argument("--low-seconds", type=float, default=10, help="at 1,000/s")
    parser.add_argument("--settle-timeout", type=float, default=240)
    results = asyncio.run(measure(parser.parse_args(argv)))
    print(report.table(results))
    out = report.RESULTS / f"settled-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"settled: wrote {out}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
