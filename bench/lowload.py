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
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from . import e2e, latency
from .ab import parse_variant, stage_shares
from .embedded import DATA
from .gcstats import gc_counters, gc_pauses, scraped
from .procs import CpuSampler
from .report import RESULTS
from .run import infra_env, latency_lines

CONTACTS, WORKSPACES = 2_000, 5


_BATCHES = re.compile(
    r'^bonychat_batch_size_(count|sum)\{service="([a-z]+)"\} ([0-9.e+]+)$', re.M)


def batch_counters(world: e2e.World) -> dict[str, dict[str, float]]:
    """Each service's ``bonychat_batch_size`` count and sum, from its ``/metrics``."""
    found: dict[str, dict[str, float]] = {}
    for _, text in scraped(world):
        for kind, service, value in _BATCHES.findall(text):
            found.setdefault(service, {})[kind] = float(value)
    return found


def cycles(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]],
           seconds: float) -> dict[str, dict[str, float]]:
    """Batches per second and records per batch of each service between two scrapes
    (the conversation service counts one batch per partition of a transaction)."""
    out = {}
    for service, now in after.items():
        then = before.get(service, {})
        count = now.get("count", 0) - then.get("count", 0)
        records = now.get("sum", 0) - then.get("sum", 0)
        out[service] = {"batches_per_s": round(count / seconds, 1),
                        "records_per_batch": round(records / count, 1) if count else 0.0}
    return out


def spy(world: e2e.World, tag: str, seconds: float) -> list[subprocess.Popen[bytes]]:
    """py-spy --gil on every service for ``seconds`` (raw stacks under bench/data/profiles)."""
    into = DATA / "profiles"
    into.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("py-spy")
    return [subprocess.Popen(
        [str(exe), "record", "--gil", "-r", "100", "-d", str(max(1, int(seconds))),
         "-f", "raw", "-o", str(into / f"{tag}-{p.name}.txt"), "--pid", str(p.pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in world.processes]


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
            tag = f"lowload-{time.strftime('%Y%m%dT%H%M%S')}-{rate}"
            spies = spy(world, tag, args.seconds) if args.profile and n == 0 else []
            counted, started = batch_counters(world), time.monotonic()
            collected = gc_counters(world)
            run = await latency.measure_latency(
                world, offered(rate, args.seconds, 20 + n, f"r{rate}-".encode()), rate,
                database_watch=args.watch)
            result[str(rate)] = {
                "p50_ms": run["p50_ms"], "p99_ms": run["p99_ms"], "max_ms": run["max_ms"],
                "p99_ms_by_second": run["p99_ms_by_second"],
                "kafka_ack_p99_ms": run["kafka_ack_p99_ms"],
                "achieved_rate_per_s": run["achieved_rate_per_s"],
                **({"by_second": run["by_second"]} if args.watch else {}),
                "cores": {k: v["mean_cores"] for k, v in run["cpu_cores"].items()},
                "us_per_event": run["cpu_us_per_event"],
                "postgres_us_per_event_by_client": run["postgres_us_per_event_by_client"],
                "batches": cycles(counted, batch_counters(world), time.monotonic() - started),
                "gc": gc_pauses(collected, gc_counters(world))}
            for process in spies:
                process.wait(60)
            if spies:
                result[str(rate)]["stages_percent_of_gil_samples"] = {
                    p.name.removeprefix(f"{tag}-").removesuffix(".txt"): stage_shares(p)
                    for p in sorted((DATA / "profiles").glob(f"{tag}-*.txt"))}
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
        row(f"{rate}/s: publisher: events/s achieved, Kafka ack p99 ms",
            lambda r, k=rate: f"{r[k].get('achieved_rate_per_s')}, {r[k].get('kafka_ack_p99_ms')}")
        row(f"{rate}/s: p99 ms of each second",
            lambda r, k=rate: " ".join(map(str, r[k].get("p99_ms_by_second", []))))
        for proc in ("ingest", "conversation", "relay", "projections", "kafka", "postgres",
                     "pipeline"):
            row(f"{rate}/s: µs per event, {proc}",
                lambda r, k=rate, p=proc: f"{r[k]['us_per_event'].get(p, 0):.0f}")
        row(f"{rate}/s: PostgreSQL µs per event by client", lambda r, k=rate: ", ".join(
            f"{c} {v:.0f}" for c, v in r[k].get("postgres_us_per_event_by_client", {}).items()))
        for service in ("ingest", "conversation", "relay", "projections"):
            row(f"{rate}/s: {service} batches/s (records each)",
                lambda r, k=rate, s=service: "{batches_per_s}, ({records_per_batch})".format(
                    **r[k].get("batches", {}).get(s, {"batches_per_s": "?",
                                                      "records_per_batch": "?"})))
        for service in ("conversation", "projections"):
            row(f"{rate}/s: {service} GC: collections gen0/1/2, ms in all (CPU ms), "
                "longest ≤ ms",
                lambda r, k=rate, s=service: "{gen0:.0f}/{gen1:.0f}/{gen2:.0f}, {ms} ({cpu}), "
                "{longest_under_ms}".format(cpu=r[k].get("gc", {}).get(s, {}).get("cpu_ms", "?"),
                                            **r[k].get("gc", {}).get(s, {
                    "gen0": 0, "gen1": 0, "gen2": 0, "ms": "?", "longest_under_ms": "?"})))
        row(f"{rate}/s: other users' cores", lambda r, k=rate: r[k]["cores"].get("other"))
        row(f"{rate}/s: PostgreSQL for the harness / other clients (cores)",
            lambda r, k=rate: "{}, {}".format(r[k]["cores"].get("postgres: bench harness"),
                                              r[k]["cores"].get("postgres: other clients")))
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
    parser.add_argument("--watch", action="store_true",
                        help="what PostgreSQL did in each second of each rate (bench.dbwatch:"
                             " autovacuum, checkpoints, lock waits) beside its latencies")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy --gil every service at the first rate")
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
