"""A/B of the local broker's JIT: a freshly started broker per variant, a backlog, then 1,000/s.

    python -m bench.broker_jit --events 1000000 --rounds 1 \\
        --variant c2: --variant c1:-XX:TieredStopAtLevel=1

A variant is ``NAME:JVM FLAGS`` given to ``infra/kafka/start.sh`` as
``BONYCHAT_KAFKA_JIT_OPTS`` (empty: the JVM's default tiered C1 + C2). For each
variant the broker is stopped and started again (a cold JVM, as after ``make
infra-up``), the backlog is published to fresh topics, raw consume is measured, the
services drain it (``bench.e2e.run_e2e``), and then ``--low-rate`` events/s are
offered for ``--seconds`` twice: right after the backlog and ``--gap`` seconds later.
Besides the per-process CPU of ``bench.procs`` it reads the broker's threads from
``/proc``: compiler threads (``C1/C2 CompilerThread``), request handlers
(``data-plane-kafka-*``), collector threads and the rest. The broker is left running
with the last variant: restart it with ``make infra-down infra-up`` for the default.
Prints one line per phase, writes ``bench/results/broker-jit-<timestamp>.json``.

    python -m bench.broker_jit --producer-only --rates 50,1000 --variant c1:-XX:TieredStopAtLevel=1

``--producer-only``: no services; the benchmark's publisher (``bench.limits``, as in
the latency phases) alone offers each rate for ``--seconds`` to a fresh topic, after a
3 s warm-up: the broker's cores for the load generator's produce requests by themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from . import e2e, latency, procs
from .report import RESULTS
from .run import ROOT, Bench, latency_lines

GROUPS = (("jit", "CompilerThre"), ("requests", "data-plane-kafk"),
          ("gc", ("GC Thread", "G1 ", "Conc#", "Refine#", "Main Marker")))


def thread_ticks(pid: int) -> dict[str, tuple[str, int]]:
    """Thread id -> (name, user + system ticks) of every thread of ``pid``."""
    out: dict[str, tuple[str, int]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        task = Path(f"/proc/{pid}/task/{tid}")
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        ticks = procs.stat_ticks(task / "stat")
        if ticks is not None:
            out[tid] = (name, ticks)
    return out


def group_of(name: str) -> str:
    for group, needles in GROUPS:
        if any(n in name for n in ((needles,) if isinstance(needles, str) else needles)):
            return group
    return "other"


def thread_seconds(before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]
                   ) -> dict[str, float]:
    """CPU seconds by thread group between two :func:`thread_ticks` readings."""
    used: dict[str, float] = {}
    for tid, (name, ticks) in after.items():
        group = group_of(re.sub(r"\d+", "N", name))
        used[group] = used.get(group, 0.0) + (ticks - before.get(tid, (name, 0))[1]) / procs.TICK
    return {k: round(v, 2) for k, v in sorted(used.items())}


def restart_broker(jit: str) -> int:
    """Restart the broker with ``jit`` (``JIT FLAGS[|GC FLAGS]``: the GC part, when
    given, replaces ``start.sh``'s collector flags, ``BONYCHAT_KAFKA_GC_OPTS``)."""
    jit, bar, gc = jit.partition("|")
    env = {**os.environ, "BONYCHAT_KAFKA_JIT_OPTS": jit}
    if bar:
        env["BONYCHAT_KAFKA_GC_OPTS"] = gc
    for script in ("stop.sh", "start.sh"):
        subprocess.run(["bash", str(ROOT / "infra" / "kafka" / script)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    [pid] = procs._infra_pids()["kafka"]
    return pid


async def one(bench: Bench, jit: str, low_rate: int, seconds: float, gap: float
              ) -> dict[str, Any]:
    pid = restart_broker(jit)
    p = bench.p
    records, expected = bench.data(p.events, p.contacts)
    world = bench.world()
    result: dict[str, Any] = {"jit_opts": jit, "kafka_jvm_flags": procs.broker_jvm_flags()}
    try:
        await world.create()
        result.update(await bench.published(world, records))
        before = thread_ticks(pid)
        run = await e2e.run_e2e(world, records, expected, interval=p.poll_interval_s)
        result["e2e"] = {"events_per_s": run["events_per_s"],
                         "cpu_us_per_event": run["cpu_us_per_event"],
                         "broker_threads_cpu_s": thread_seconds(before, thread_ticks(pid))}
        for i, pause in enumerate((0.0, gap)):
            await asyncio.sleep(pause)
            before = thread_ticks(pid)
            low = await bench.offered(world, low_rate, seconds, "", seed=13 + 2 * i,
                                      prefix=f"jit{i}-".encode())
            result[f"low_rate_{i}"] = {
                "after_s": pause, "p99_ms": low["p99_ms"],
                "cores": {k: v["mean_cores"] for k, v in low["cpu_cores"].items()},
                "broker_threads_cpu_s": thread_seconds(before, thread_ticks(pid))}
        world.stop()
    finally:
        await world.destroy()
    return result


async def producer_only(bench: Bench, jit: str, rates: list[int], seconds: float
                        ) -> dict[str, Any]:
    pid = restart_broker(jit)
    p = bench.p
    world = bench.world()
    result: dict[str, Any] = {"jit_opts": jit, "kafka_jvm_flags": procs.broker_jvm_flags()}
    try:
        await world.create()
        for i, (rate, span) in enumerate([(1_000, 3.0)] + [(r, seconds) for r in rates]):
            # the latency phases' own publisher and pacing; the first run warms up
            timed = latency.latency_records(
                latency_lines(int(rate * span), p.contacts, p.workspaces, seed=23 + i),
                f"prod{i}-".encode())
            await asyncio.sleep(1)
            before, started = thread_ticks(pid), time.perf_counter()
            await latency._publish_at_rate(world, timed, rate, {}, [])
            used = thread_seconds(before, thread_ticks(pid))
            elapsed = time.perf_counter() - started
            if i == 0:
                continue
            name = f"producer_only_{rate}"  # a rate given again: numbered by its place
            result[name if name not in result else f"{name}_{i}"] = {
                "broker_cores": round(sum(used.values()) / elapsed, 3),
                "broker_cores_by_thread_group": {k: round(v / elapsed, 3)
                                                 for k, v in used.items()}}
    finally:
        await world.destroy()
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench("full")
    bench.p = replace(bench.p, events=args.events, contacts=max(args.events // 10, 1))
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        order = args.variant if r % 2 == 0 else args.variant[::-1]
        for name, jit in order:
            bench.step(f"round {r + 1}: {name} ({jit or 'JVM default'})")
            job = (producer_only(bench, jit, [int(x) for x in args.rates.split(",")],
                                 args.seconds) if args.producer_only
                   else one(bench, jit, args.low_rate, args.seconds, args.gap))
            rounds.append({"round": r + 1, "variant": name, "speed_loop_s": speed(),
                           **await job})
            print(orjson.dumps(rounds[-1]).decode(), flush=True)
    return {"events": args.events, "rounds": rounds}


def speed() -> float:
    """Seconds of a fixed pure-Python loop (``speed_loop_s``): the interpreter's speed only.

    It did not move when system calls and small requests cost twice as much (docs/runtime.md,
    "The machine's phases"); the harness's CPU at 1,000/s is the better gauge of those."""
    started = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i * i % 7
    return round(time.perf_counter() - started, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True, type=lambda v: tuple(
        v.split(":", 1)) if ":" in v else (v, ""), help="NAME:JVM FLAGS (may be empty)")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--low-rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--gap", type=float, default=30)
    parser.add_argument("--producer-only", action="store_true",
                        help="no services: the broker's CPU for the load generator alone")
    parser.add_argument("--rates", default="50,1000", help="--producer-only: rates (events/s)")
    results = asyncio.run(run(parser.parse_args(argv)))
    path = RESULTS / f"broker-jit-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
