"""A/B of the Kafka e2e path: CPU µs per event per process, variants run back to back.

    python -m bench.ab --events 150000 --rounds 2 \\
        --variant before:BONYCHAT_GC_TUNING=0 --variant after
    python -m bench.ab ... --profile    # py-spy --gil --native on every service
    python -m bench.ab --variant before@/path/to/old-checkout --variant after   # two versions
    python -m bench.ab --layout serve ...   # one `bonychat serve` (default services) each

Each round runs every variant once (the order alternates: A B, B A, ...) on the
same generated backlog, published to fresh topics before the services start
(``bench.e2e.run_e2e``: ingest, conversation, relay, projections as separate
processes). A variant is ``NAME[:VAR=VALUE,...]``: environment given to the
services. The machine is shared, so compare variants only within one run; the
load average before each measurement is recorded. With ``--profile``, py-spy
samples every service (``--gil``: only the thread holding the GIL; ``--native``:
the collector shows as ``gc_collect_main``; native stacks need py-spy to pause
the process for each of its 50 samples a second) and the stacks are grouped into
stages (``STAGES``); profiled runs are for the shares, not for the µs.
Prints a table, writes ``bench/results/ab-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from . import e2e, embedded, limits, procs
from .embedded import DATA
from .report import RESULTS
from .run import infra_env

# (stage, substrings of a stack: the first rule any frame matches wins, rules in order)
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gc", ("gc_collect_main",)),
    ("command decode (pydantic)", ("model_validate_json", "commands/codec", "decode_command")),
    ("ingest validation", ("normalise",)),
    ("postgres client (psycopg)", ("psycopg",)),
    ("kafka client (aiokafka)", ("aiokafka", "services/runtime/kafka.py")),
    ("projection", ("services/projections/",)),
    ("decide (domain)", ("services/conversation/",)),
    ("json (orjson)", ("orjson",)),
    ("asyncio loop", ("asyncio",)),
)


def stage_of(stack: str) -> str:
    for stage, needles in STAGES:
        if any(n in stack for n in needles):
            return stage
    return "other"


def stage_shares(path: Path) -> dict[str, float]:
    """Share (%) of the GIL-holding samples per stage in a py-spy raw file."""
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[stage_of(stack)] += int(n)
    total = sum(counts.values()) or 1
    return {k: round(100 * v / total, 1) for k, v in counts.most_common()}


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME[@CHECKOUT][:VAR=VALUE,...]``: CHECKOUT is another git worktree (with its own
    ``.venv``, ``make install``) whose ``bonychat serve`` runs the services of that variant,
    for an A/B of two versions of the code on the same backlog and machine state."""
    head, _, assignments = text.partition(":")
    name, _, checkout = head.partition("@")
    env = dict(item.split("=", 1) for item in assignments.split(",") if item)
    if checkout:
        if not (Path(checkout) / ".venv" / "bin" / "bonychat").exists():
            raise SystemExit(f"ab: {checkout}/.venv/bin/bonychat missing (run make install there)")
        env[procs.CHECKOUT] = str(Path(checkout).resolve())
    return name, env


#: what py-spy samples: the thread holding the GIL (``--profile``), or every thread,
#: waiting ones too, each stack under its thread (``--profile-idle``: where a service waits)
SPY_MODE: list[str] = ["--gil", "--native"]


async def profile_services(world: e2e.World, into: Path, tag: str,
                           spies: list[subprocess.Popen[bytes]]) -> None:
    """Attach py-spy to each service once it is up (until it exits)."""
    spy = Path(sys.executable).with_name("py-spy")
    seen: set[str] = set()
    while True:
        for process in list(world.processes):
            if process.name not in seen and process.ready():
                seen.add(process.name)
                spies.append(subprocess.Popen(
                    [str(spy), "record", *SPY_MODE, "-r", "50",
                     "-f", "raw", "-o", str(into / f"{tag}-{process.name}.txt"),
                     "--pid", str(process.pid)],
                    stdout=subprocess.DEVNULL, stderr=(into / f"{tag}-{process.name}.log"
                                                       ).open("wb")))
        await asyncio.sleep(0.05)


async def one(bootstrap: str, database_url: str, records: list[limits.Record],
              expected: e2e.Expected, *, env: dict[str, str], profile: Path | None,
              tag: str, layout: str = "services") -> dict[str, Any]:
    world = e2e.World(bootstrap, database_url, 4, extra_env=env)
    spies: list[subprocess.Popen[bytes]] = []
    try:
        await world.create()
        await limits.publish(bootstrap, world.topics.gateway, records)
        load = [round(x, 2) for x in os.getloadavg()]
        watcher = (asyncio.create_task(profile_services(world, profile, tag, spies))
                   if profile else None)
        run = await e2e.run_e2e(world, records, expected, interval=0.2, layout=layout)
        if watcher is not None:
            watcher.cancel()
        run["service_peak_rss_mb"] = world.stop()
        for spy in spies:
            spy.wait(60)
        run["loadavg_before"] = load
        if profile:
            run["stages_percent_of_gil_samples"] = {
                p.name.removeprefix(f"{tag}-").removesuffix(".txt"): stage_shares(p)
                for p in sorted(profile.glob(f"{tag}-*.txt"))}
        return run
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.kill()
        await world.destroy()


def table(runs: dict[str, list[dict[str, Any]]]) -> str:
    names = list(runs)
    stages = list(dict.fromkeys(k for rs in runs.values() for r in rs
                                for k in r["cpu_us_per_event"]))
    med = {n: {s: statistics.median(r["cpu_us_per_event"].get(s, 0) for r in runs[n])
               for s in stages} for n in names}
    lines = ["| process | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for stage in stages:
        lines.append(f"| {stage} | " + " | ".join(
            " / ".join(f"{r['cpu_us_per_event'].get(stage, 0):.0f}" for r in runs[n])
            + f" (median {med[n][stage]:.0f})" for n in names) + " |")
    for service in runs[names[0]][0].get("service_peak_rss_mb", {}):
        lines.append(f"| peak RSS {service} (MiB) | " + " | ".join(
            " / ".join(str(r["service_peak_rss_mb"].get(service)) for r in runs[n])
            for n in names) + " |")
    lines.append("| events/s | " + " | ".join(
        " / ".join(str(r["events_per_s"]) for r in runs[n]) for n in names) + " |")
    lines.append("| projections' tail (s) | " + " | ".join(
        " / ".join(str(r.get("projections_tail_s")) for r in runs[n]) for n in names) + " |")
    lines.append("| load avg before | " + " | ".join(
        " / ".join(str(r["loadavg_before"][0]) for r in runs[n]) for n in names) + " |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap, database_url = infra_env()
    variants = [parse_variant(v) for v in args.variant]
    path = embedded.events_file(args.events, args.contacts or max(args.events // 10, 1))
    lines = path.read_bytes().splitlines()
    records, expected = limits.keyed(lines), e2e.expectation(path, lines)
    if args.profile_idle:
        SPY_MODE[:] = ["--idle", "--threads"]
    profile = DATA / "profiles" if args.profile or args.profile_idle else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for round_ in range(args.rounds):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for name, env in order:
            print(f"ab [{time.strftime('%H:%M:%S')}]: round {round_ + 1} {name} {env}",
                  flush=True)
            run = await one(bootstrap, database_url, records, expected, env=env, profile=profile,
                            tag=f"{stamp}-{name}-{round_ + 1}", layout=args.layout)
            print(f"  {run['events_per_s']}/s (projections' tail after the conversation "
                  f"service {run.get('projections_tail_s')} s), µs/event "
                  f"{run['cpu_us_per_event']}", flush=True)
            runs[name].append(run)
    return {"events": args.events, "layout": args.layout, "variants": dict(variants),
            "profiled": bool(profile),
            "cpus": os.cpu_count(), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--contacts", type=int, default=0, help="default: events / 10")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variant", action="append", required=True,
                        help="NAME[@CHECKOUT][:VAR=VALUE,...], at least two")
    parser.add_argument("--profile", action="store_true", help="py-spy every service")
    parser.add_argument("--profile-idle", action="store_true",
                        help="py-spy every thread of every service, idle ones too")
    parser.add_argument("--layout", choices=e2e.LAYOUTS, default="services",
                        help="services: each its own serve --services X process (default); "
                             "serve: one `bonychat serve` with its default services")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    print(table(result["runs"]))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ab-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"ab: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
