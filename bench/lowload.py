"""A/B of the pipeline at low and moderate load, in a settled state: cores and latency.

    python -m bench.lowload --variant before@/path/to/old-checkout --variant after \\
        --rounds 2 --seconds 15 --rates 1000,5000

For each round every variant (order alternating, as in ``bench.ab``) gets fresh
topics and schema and its four services as separate ``bonychat serve`` processes
(``bench.e2e.start_services``). Once they are up, a warm-up of ``--warmup``
seconds at the lowest rate lets caches, the broker's JIT and the connections
settle; then the services sit idle for ``--idle`` seconds (their CPU, and the
broker's, with nothing to do), then each rate is offered for ``--seconds``
(``bench.latency.measure_latency``: publish → visible in the read model, CPU per
process from ``/proc``). ``bench.run`` measures the same right after a 20k-event
backlog and for 3 s only, which on a shared machine is mostly noise; this runs
longer, settled, and back to back. Prints a table, writes
``bench/results/lowload-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import orjson

from . import e2e, latency
from .ab import parse_variant
from .procs import CpuSampler
from .report import RESULTS
from .run import infra_env, latency_lines

CONTACTS, WORKSPACES = 2_000, 5


def offered(rate: int, seconds: float, seed: int, prefix: bytes) -> list[latency.Timed]:
    lines = latency_lines(int(rate * seconds), CONTACTS, WORKSPACES, seed)
    return latency.latency_records(lines, prefix)


async def one(bootstrap: str, database_url: str, env: dict[str, str],
              args: argparse.Namespace) -> dict[str, Any]:
    world = e2e.World(bootstrap, database_url, 4, extra_env=env)
    rates = [int(r) for r in args.rates.split(",")]
    result: dict[str, Any] = {"loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    try:
        await world.create()
        pids = e2e.start_services(world)
        deadline = time.monotonic() + 120
        while not all(p.ready() for p in world.processes):
            world.check()
            if time.monotonic() > deadline:
                raise TimeoutError("services did not start")
            await asyncio.sleep(0.2)
        if args.warmup:
            await latency.measure_latency(world, offered(min(rates), args.warmup, 3, b"warm-"),
                                          min(rates))
        await asyncio.sleep(2)
        with CpuSampler(pids) as cpu:
            await asyncio.sleep(args.idle)
        result["idle_cores"] = {k: v["mean_cores"] for k, v in cpu.summary().items()}
        for n, rate in enumerate(rates):
            run = await latency.measure_latency(
                world, offered(rate, args.seconds, 20 + n, f"r{rate}-".encode()), rate)
            result[str(rate)] = {
                "p50_ms": run["p50_ms"], "p99_ms": run["p99_ms"], "max_ms": run["max_ms"],
                "cores": {k: v["mean_cores"] for k, v in run["cpu_cores"].items()},
                "us_per_event": run["cpu_us_per_event"]}
        result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        world.stop()
        return result
    finally:
        world.stop()
        await world.destroy()


def table(runs: dict[str, list[dict[str, Any]]], rates: list[str]) -> str:
    names = list(runs)
    rows = ["| measure | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]

    def row(label: str, get: Any) -> None:
        rows.append(f"| {label} | " + " | ".join(
            " / ".join(str(get(r)) for r in runs[n]) for n in names) + " |")

    row("idle: pipeline cores", lambda r: r["idle_cores"].get("pipeline"))
    row("idle: kafka cores", lambda r: r["idle_cores"].get("kafka"))
    for rate in rates:
        row(f"{rate}/s: pipeline cores", lambda r, k=rate: r[k]["cores"].get("pipeline"))
        row(f"{rate}/s: latency p50, p99 ms",
            lambda r, k=rate: f"{r[k]['p50_ms']:.0f}, {r[k]['p99_ms']:.0f}")
        for proc in ("ingest", "conversation", "relay", "projections", "kafka", "postgres",
                     "pipeline"):
            row(f"{rate}/s: µs per event, {proc}",
                lambda r, k=rate, p=proc: f"{r[k]['us_per_event'].get(p, 0):.0f}")
        row(f"{rate}/s: other users' cores", lambda r, k=rate: r[k]["cores"].get("other"))
    row("load avg before", lambda r: r["loadavg_before"][0])
    return "\n".join(rows)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap, database_url = infra_env()
    variants = [parse_variant(v) for v in args.variant]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    for round_ in range(args.rounds):
        for name, env in (variants if round_ % 2 == 0 else variants[::-1]):
            print(f"lowload [{time.strftime('%H:%M:%S')}]: round {round_ + 1} {name}",
                  flush=True)
            runs[name].append(await one(bootstrap, database_url, env, args))
            print(f"  {orjson.dumps(runs[name][-1]).decode()}", flush=True)
    return {"variants": dict(variants), "args": vars(args), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True,
                        help="NAME[@CHECKOUT][:VAR=VALUE,...] (bench.ab)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rates", default="1000,5000")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--idle", type=float, default=10)
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    print(table(result["runs"], args.rates.split(",")))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"lowload-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"lowload: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
