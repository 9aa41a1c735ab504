"""``make bench`` / ``make bench-quick``: every benchmark, next to the machine's limits.

    python -m bench.run --quick     # < 60 s: the same measurements on small inputs
    python -m bench.run --full      # 1M events, 30 s latency run, scaling runs

Kafka and PostgreSQL come from the environment (``make`` exports infra/local.env;
without it the file is read here). Every measurement uses fresh topics, a fresh
PostgreSQL schema and consumer groups, removed afterwards. Prints a table, writes
``bench/results/<timestamp>-<mode>.json`` and ``latest-<mode>.json``, and prints the
JSON on one line at the end. Exit status 1 if any measurement failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from . import e2e, embedded, latency, limits, procs, report, settle
from .generate import Generator, write


@dataclass(frozen=True)
class Params:
    events: int
    contacts: int
    latency_seconds: float
    copy_rows: int
    poll_interval_s: float
    concurrent_events: int  # e2e with publishing running concurrently
    scaling_events: int = 0  # 0: no scaling runs
    workspaces: int = 5
    latency_rate: int = 5_000
    low_rate: int = 1_000  # a second latency run well below capacity: the pipeline's floor
    low_rate_seconds: float = 3
    serve_events: int = 10_000  # one `bonychat serve` (default services) on a backlog
    # the same two rates again once autovacuum is done with the schema (bench.settle),
    # waiting at most this long (s); 0: not measured
    settle_timeout_s: float = 0


MODES = {
    # 20k events, not 30k: with the machine shared, 30k did not fit in 60 s
    "quick": Params(events=20_000, contacts=2_000, latency_seconds=5, copy_rows=50_000,
                    poll_interval_s=0.2, concurrent_events=10_000),
    "full": Params(events=1_000_000, contacts=100_000, latency_seconds=30, copy_rows=300_000,
                   poll_interval_s=0.5, concurrent_events=200_000, scaling_events=200_000,
                   low_rate_seconds=10, serve_events=200_000, settle_timeout_s=240),
}
SCALING = (("partitions_1_conversation_1", 1, 1), ("partitions_4_conversation_1", 4, 1),
           ("partitions_4_conversation_2", 4, 2))
ROOT = Path(__file__).resolve().parents[1]


def infra_env() -> tuple[str, str]:
    if "BONYCHAT_KAFKA_BOOTSTRAP" not in os.environ:
        for line in (ROOT / "infra" / "local.env").read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                os.environ.setdefault(key, value)
    return os.environ["BONYCHAT_KAFKA_BOOTSTRAP"], os.environ["BONYCHAT_DATABASE_URL"]


def latency_lines(count: int, contacts: int, workspaces: int, seed: int = 11) -> list[bytes]:
    path = embedded.DATA / f"latency-{count}-{contacts}-{workspaces}-{seed}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            write(Generator(events=count, contacts=contacts, workspaces=workspaces, seed=seed),
                  handle)
        tmp.rename(path)
    return path.read_bytes().splitlines()


def machine() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()
    return {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
            "git_commit": git("rev-parse", "--short", "HEAD"),
            "git_dirty_files": len(git("status", "--porcelain").splitlines()),
            "kafka_jvm_flags": procs.broker_jvm_flags()}


class Bench:
    """One run: results, and failures recorded loudly without stopping other measurements."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.p = MODES[mode]
        self.bootstrap, self.database_url = infra_env()
        self.results: dict[str, Any] = {
            "mode": mode, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine(), "params": {**asdict(self.p), "tuning_env": {
                k: v for k, v in os.environ.items() if (k.startswith("BONYCHAT_KAFKA_")
                or k == "BONYCHAT_CONVERSATION_INPUT")
                and k not in ("BONYCHAT_KAFKA_BOOTSTRAP", "BONYCHAT_KAFKA_PORT")}},
            "errors": []}

    def step(self, what: str) -> None:
        print(f"bench [{time.strftime('%H:%M:%S')}]: {what}", flush=True)

    def failed(self, what: str, exc: BaseException) -> None:
        text = f"{what}: {type(exc).__name__}: {exc}"
        print(f"bench: FAILED {text}", file=sys.stderr, flush=True)
        traceback.print_exception(exc, file=sys.stderr)
        self.results["errors"].append(text)

    async def guarded(self, what: str, job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except Exception as exc:
            self.failed(what, exc)

    def world(self, partitions: int = 4) -> e2e.World:
        return e2e.World(self.bootstrap, self.database_url, partitions)

    def data(self, events: int, contacts: int) -> tuple[list[limits.Record], e2e.Expected]:
        path = embedded.events_file(events, contacts, self.p.workspaces)
        lines = path.read_bytes().splitlines()
        return limits.keyed(lines), e2e.expectation(path, lines)

    async def published(self, world: e2e.World, records: list[limits.Record]
                        ) -> dict[str, Any]:
        """Publish before the services start, then the raw consume limit on that topic."""
        seconds = await limits.publish(self.bootstrap, world.topics.gateway, records)
        raw = await limits.raw_consume(self.bootstrap, world.topics.gateway, len(records))
        return {"publish_events_per_s": round(len(records) / seconds),
                "raw_consume_events_per_s": round(raw)}

    async def main_world(self) -> None:
        """Publish, raw consume, e2e, latency, service RSS, replay, raw COPY."""
        p, r = self.p, self.results
        records, expected = self.data(p.events, p.contacts)
        world = self.world()
        try:
            await world.create()
            self.step(f"publishing {len(records):,} events, raw consume")
            r.update(await self.published(world, records))
            self.step("e2e: ingest, conversation, projections as separate processes")
            run = await e2e.run_e2e(world, records, expected, interval=p.poll_interval_s)
            r["e2e"] = run
            r["e2e_events_per_s"] = run["events_per_s"]
            r["ratio_e2e_to_raw_consume"] = round(run["events_per_s"]
                                                  / r["raw_consume_events_per_s"], 4)
            r["cpu_us_per_event"] = run["cpu_us_per_event"]
            await self.latency_phases(world, r, "")
            if p.settle_timeout_s:
                self.step("waiting for autovacuum to finish with the schema's tables")
                r["settle"] = await asyncio.to_thread(
                    settle.wait_settled, self.database_url, world.schema, p.settle_timeout_s)
                self.step(f"settled: {r['settle']}")
                await self.latency_phases(world, r, "_settled")
            r["service_peak_rss_mb"] = world.stop()
            self.step("bonychat replay on the bench schema")
            child = embedded.run_child([embedded.bonychat(), "replay", "--no-progress"],
                                       world.env())
            replayed = orjson.loads(child.stdout)
            r["replay"] = {"stored_events": replayed["replayed_events"],
                           "wall_seconds": round(child.seconds, 2),
                           "internal_seconds": replayed["seconds"],
                           "internal_events_per_s": round(replayed["replayed_events"]
                                                          / replayed["seconds"]),
                           "peak_rss_mb": round(child.peak_rss_mb, 1)}
            r["replay_events_per_s"] = round(replayed["replayed_events"] / child.seconds)
            self.step(f"raw COPY of {p.copy_rows:,} rows of {run['avg_state_bytes']} bytes")
            r["raw_copy_rows_per_s"] = round(limits.raw_copy(
                self.database_url, world.schema, p.copy_rows, run["avg_state_bytes"]))
        finally:
            await world.destroy()

    async def latency_phases(self, world: e2e.World, r: dict[str, Any], suffix: str) -> None:
        """``p.low_rate`` then ``p.latency_rate`` events/s offered to the running services
        (suffix "": right after the backlog; "_settled": after :mod:`bench.settle`)."""
        p = self.p
        settled = bool(suffix)  # settled: other lines, other ids
        low = await self.offered(world, p.low_rate, p.low_rate_seconds, suffix,
                                 seed=17 if settled else 13,
                                 prefix=b"slo-" if settled else b"low-")
        r[f"latency_low_rate{suffix}"] = low
        r[f"cpu_us_per_event_low_rate{suffix}"] = low["cpu_us_per_event"]
        r[f"pipeline_cores_at_low_rate{suffix}"] = low["cpu_cores"].get("pipeline", {}).get(
            "mean_cores")
        lat = await self.offered(world, p.latency_rate, p.latency_seconds, suffix,
                                 seed=19 if settled else 11,
                                 prefix=b"sla-" if settled else b"lat-")
        r[f"latency{suffix}"] = lat
        r[f"latency_p50_ms{suffix}"], r[f"latency_p99_ms{suffix}"] = lat["p50_ms"], lat["p99_ms"]
        r[f"cpu_us_per_event_at_latency_rate{suffix}"] = lat["cpu_us_per_event"]

    async def offered(self, world: e2e.World, rate: int, seconds: float, suffix: str, *,
                      seed: int, prefix: bytes) -> dict[str, Any]:
        """Publish ``rate * seconds`` latency lines at ``rate``/s; their measurement."""
        p = self.p
        count = int(rate * seconds)
        self.step(f"latency{suffix}: {count:,} events at {rate:,}/s")
        timed = latency.latency_records(
            latency_lines(count, p.contacts, p.workspaces, seed), prefix)
        return await latency.measure_latency(world, timed, rate, database_watch=True)

    async def e2e_world(self, key: str, events: int, partitions: int, copies: int,
                        concurrent: bool) -> dict[str, Any]:
        records, expected = self.data(events, max(events // 10, 1))
        world = self.world(partitions)
        try:
            await world.create()
            limit = {} if concurrent else await self.published(world, records)
            self.step(f"{key}: e2e of {events:,} events")
            run = await e2e.run_e2e(world, records, expected, copies=copies,
                                    concurrent=concurrent, interval=self.p.poll_interval_s)
            run["service_peak_rss_mb"] = world.stop()
            return {**limit, **run}
        finally:
            await world.destroy()

    async def one_serve(self) -> None:
        """A user's first run: one ``bonychat serve`` (default services and settings)
        draining a backlog published before it starts, next to raw consume of that topic."""
        events = self.p.serve_events
        records, expected = self.data(events, max(events // 10, 1))
        world = self.world()
        try:
            await world.create()
            limit = await self.published(world, records)
            self.step(f"one bonychat serve (default services) on a backlog of {events:,}")
            run = await e2e.run_e2e(world, records, expected, layout="serve",
                                    interval=self.p.poll_interval_s)
            run["service_peak_rss_mb"] = world.stop()
        finally:
            await world.destroy()
        r = self.results
        r["serve"] = {**limit, **run}
        r["serve_events_per_s"] = run["events_per_s"]
        r["ratio_serve_to_raw_consume"] = round(run["events_per_s"]
                                                / limit["raw_consume_events_per_s"], 3)
        r["cpu_us_per_event_serve"] = run["cpu_us_per_event"]

    async def concurrent(self) -> None:
        run = await self.e2e_world("concurrent publish", self.p.concurrent_events, 4, 1, True)
        self.results["e2e_concurrent"] = run
        self.results["e2e_concurrent_publish_events_per_s"] = run["events_per_s"]

    async def scaling(self) -> None:
        scaling = self.results.setdefault("scaling", {})
        for name, partitions, copies in SCALING:
            async def one(name: str = name, partitions: int = partitions,
                          copies: int = copies) -> None:
                scaling[name] = await self.e2e_world(f"scaling {name}", self.p.scaling_events,
                                                     partitions, copies, False)
            await self.guarded(f"scaling {name}", one)

    def embedded(self) -> None:
        self.step(f"embedded import + replay of {self.p.events:,} events (SQLite)")
        try:
            found = embedded.measure_import(self.p.events, self.p.contacts)
            self.results["embedded"] = found
            self.results.update({k: found[k] for k in (
                "embedded_import_events_per_s", "embedded_import_peak_rss_mb",
                "embedded_replay_events_per_s")})
        except Exception as exc:
            self.failed("embedded", exc)

    async def run(self) -> int:
        started = time.perf_counter()
        await self.guarded("e2e/latency/replay", self.main_world)
        await self.guarded("one bonychat serve", self.one_serve)
        await self.guarded("e2e with concurrent publishing", self.concurrent)
        if self.p.scaling_events:
            await self.scaling()
        self.embedded()
        r = self.results
        r["duration_s"] = round(time.perf_counter() - started, 1)
        r["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        r["targets"] = report.evaluate(r)
        print(report.table(r))
        for path in report.save(r, self.mode):
            print(f"bench: wrote {path.relative_to(ROOT)}")
        print(orjson.dumps(r).decode())
        return 1 if r["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--quick", action="store_const", dest="mode", const="quick")
    group.add_argument("--full", action="store_const", dest="mode", const="full")
    parser.add_argument("--settled", type=float, metavar="SECONDS",
                        help="also measure both rates once autovacuum is done with the "
                             "schema, waiting at most SECONDS (full: 240 by default)")
    args = parser.parse_args(argv)
    bench = Bench(args.mode)
    if args.settled is not None:
        bench.p = replace(bench.p, settle_timeout_s=args.settled)
        bench.results["params"]["settle_timeout_s"] = args.settled
    return asyncio.run(bench.run())


if __name__ == "__main__":
    sys.exit(main())
