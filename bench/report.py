"""Targets, the printed table and the JSON files of a benchmark run."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).with_name("results")

# name -> (result key, comparison, target, unit)
# name: (key in the results, dotted for nested figures, op, target, unit); the issue 13
# targets sit beside the older ones (e2e 20,000 events/s, replay 100,000/s)
TARGETS: dict[str, tuple[str, str, float, str]] = {
    "e2e_events_per_s": ("e2e_events_per_s", ">=", 20_000, "events/s"),
    "ratio_e2e_to_raw_consume": ("ratio_e2e_to_raw_consume", ">=", 0.06, "x raw consume"),
    "cpu_us_per_event_machine": ("cpu_us_per_event.machine", "<=", 70, "µs"),
    "pipeline_cores_at_1000_per_s": ("pipeline_cores_at_low_rate", "<=", 0.5, "cores"),
    "latency_p99_ms_at_1000_per_s": ("latency_low_rate.p99_ms", "<=", 100, "ms"),
    "latency_p99_ms_at_5000_per_s": ("latency_p99_ms", "<=", 250, "ms"),
    # the same once autovacuum is done with the schema (``make bench`` only: bench.settle)
    "pipeline_cores_at_1000_per_s_settled": ("pipeline_cores_at_low_rate_settled", "<=", 0.5,
                                             "cores"),
    "latency_p99_ms_at_1000_per_s_settled": ("latency_low_rate_settled.p99_ms", "<=", 100,
                                             "ms"),
    "latency_p99_ms_at_5000_per_s_settled": ("latency_p99_ms_settled", "<=", 250, "ms"),
    "replay_events_per_s": ("replay_events_per_s", ">=", 150_000, "events/s"),
    "embedded_import_events_per_s": ("embedded_import_events_per_s", ">=", 20_000,
                                     "events/s"),
    "service_peak_rss_mb": ("max_service_peak_rss_mb", "<=", 1024, "MiB"),
}


def _get(results: dict[str, Any], key: str) -> Any:
    value: Any = results
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _ok(value: Any, op: str, target: float) -> bool | None:
    if not isinstance(value, int | float) or math.isnan(value):
        return None
    return value >= target if op == ">=" else value <= target


def evaluate(results: dict[str, Any]) -> dict[str, Any]:
    """Pass/fail per target (None when the figure could not be measured)."""
    rss = [v for v in results.get("service_peak_rss_mb", {}).values() if v is not None]
    results["max_service_peak_rss_mb"] = max(rss) if rss else None
    targets = {}
    for name, (key, op, target, unit) in TARGETS.items():
        if name.endswith("_settled") and not results.get("settle"):
            continue  # no settled phase in this run (quick mode without --settled)
        value = _get(results, key)
        targets[name] = {"measured": value, "target": f"{op} {target:g} {unit}",
                         "pass": _ok(value, op, target)}
    return targets


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, float) and value < 1_000:
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:,.0f}" if isinstance(value, int | float) else str(value)


def _cpu_line(cpu: dict[str, dict[str, float]]) -> str:
    top = sorted(((v["mean_cores"], v["max_cores"], k) for k, v in cpu.items()
                  if k != "machine busy"), reverse=True)
    busy = cpu.get("machine busy", {}).get("mean_cores")
    parts = [f"{k} {mean:.2f} (max {peak:.2f})" for mean, peak, k in top if mean >= 0.05]
    return f"machine busy {busy:.2f} cores; " + ", ".join(parts) if busy is not None else "-"


def table(results: dict[str, Any]) -> str:
    """The human-readable summary (figures next to the limits measured in the same run)."""
    def g(key: str, default: Any = None) -> Any:
        return results.get(key, default)

    lat = g("latency") or {}
    rows = [
        ("raw Kafka consume (limit)", g("raw_consume_events_per_s"), "events/s", ""),
        ("raw PostgreSQL COPY (limit)", g("raw_copy_rows_per_s"), "rows/s", ""),
        ("publish to gateway topic", g("publish_events_per_s"), "events/s", ""),
        ("e2e, published before start", g("e2e_events_per_s"), "events/s",
         f"ratio to raw consume {g('ratio_e2e_to_raw_consume') or 0:.4f}"),
        ("one `bonychat serve`, backlog", g("serve_events_per_s"), "events/s",
         f"ratio to raw consume {g('ratio_serve_to_raw_consume') or 0:.3f} "
         f"({_num((g('serve') or {}).get('events'))} events, raw consume "
         f"{_num((g('serve') or {}).get('raw_consume_events_per_s'))}/s in the same run)"),
        ("e2e, publishing concurrently", g("e2e_concurrent_publish_events_per_s"),
         "events/s", ""),
        ("e2e CPU per event, pipeline", (g("cpu_us_per_event") or {}).get("pipeline"), "µs",
         f"whole machine {_num((g('cpu_us_per_event') or {}).get('machine'))} µs "
         "(other users included)"),
        ("pipeline cores busy at low rate", g("pipeline_cores_at_low_rate"), "cores",
         "services + Kafka + PostgreSQL"),
        ("latency p50", g("latency_p50_ms"), "ms",
         f"at {_num(lat.get('achieved_rate_per_s'))}/s achieved"),
        ("latency p99", g("latency_p99_ms"), "ms",
         f"kafka ack p99 {_num(lat.get('kafka_ack_p99_ms'))} ms"),
        ("latency p50 / p99 at low rate", (g("latency_low_rate") or {}).get("p50_ms"), "ms",
         f"p99 {_num((g('latency_low_rate') or {}).get('p99_ms'))} ms at "
         f"{_num((g('latency_low_rate') or {}).get('achieved_rate_per_s'))}/s"),
        *settled_rows(results),
        ("bonychat replay (PostgreSQL)", g("replay_events_per_s"), "events/s",
         f"{_num((g('replay') or {}).get('stored_events'))} stored events"),
        ("embedded import (SQLite)", g("embedded_import_events_per_s"), "events/s",
         f"peak RSS {_num(g('embedded_import_peak_rss_mb'))} MiB"),
        ("embedded replay (SQLite)", g("embedded_replay_events_per_s"), "events/s", ""),
    ]
    rows += [(f"peak RSS {name}", mb, "MiB", "") for name, mb in
             (g("service_peak_rss_mb") or {}).items()]
    for name, run in (g("scaling") or {}).items():
        rows.append((f"scaling {name}", run.get("events_per_s"), "events/s",
                     f"raw consume {_num(run.get('raw_consume_events_per_s'))}"))
    width = max(len(r[0]) for r in rows)
    lines = [f"BonyChat benchmarks ({g('mode')}, {g('started_at')}, "
             f"{_num(g('duration_s'))} s, load avg at start {g('machine', {}).get('loadavg')})"]
    lines += [f"  {name:<{width}}  {_num(value):>12} {unit:<9} {note}".rstrip()
              for name, value, unit, note in rows]
    for phase in ("e2e", "serve", "latency"):
        cpu = (g(phase) or {}).get("cpu_cores")
        if cpu:
            lines.append(f"  CPU during {phase}: {_cpu_line(cpu)}")
    for label, key in (("e2e", "cpu_us_per_event"), ("one serve", "cpu_us_per_event_serve"),
                       ("low rate", "cpu_us_per_event_low_rate"),
                       ("latency rate", "cpu_us_per_event_at_latency_rate")):
        per_event = g(key)
        if per_event:
            costs = sorted(per_event.items(), key=lambda kv: -kv[1])
            lines.append(f"  CPU µs per event ({label}, all cores): "
                         + ", ".join(f"{k} {v:,.0f}" for k, v in costs if v >= 1))
    by_client = (g("e2e") or {}).get("postgres_us_per_event_by_client")
    if by_client:
        lines.append("  PostgreSQL µs per event (e2e) by client: "
                     + ", ".join(f"{k} {v:,.1f}" for k, v in by_client.items()))
    batches = (g("e2e") or {}).get("service_batches") or {}
    stats = [f"{label} {b['batches']}x{b['mean_batch_size']:,.0f} in {b['seconds_in_batches']} s"
             for labels in batches.values() for label, b in labels.items()]
    if stats:
        lines.append(f"  e2e batches (count x mean size, time inside): {'; '.join(stats)}")
    trend = (g("latency") or {}).get("p50_ms_by_second")
    if trend:
        lines.append(f"  latency p50 (ms) by second of publishing: {trend}")
    for label, key in (("low rate", "latency_low_rate"), ("latency rate", "latency"),
                       ("low rate, settled", "latency_low_rate_settled"),
                       ("latency rate, settled", "latency_settled")):
        lines += by_second_lines(label, g(key) or {})
    lines.append("  targets:")
    for name, target in (g("targets") or {}).items():
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[target["pass"]]
        lines.append(f"    {verdict:<4}  {name}: {_num(target['measured'])} "
                     f"(target {target['target']})")
    for error in g("errors") or []:
        lines.append(f"  ERROR: {error.splitlines()[0]}")
    return "\n".join(lines)


def settled_rows(results: dict[str, Any]) -> list[tuple[str, Any, str, str]]:
    """The latency phases measured again once autovacuum was done (``bench.settle``)."""
    wait = results.get("settle")
    if not wait:
        return []
    low, lat = results.get("latency_low_rate_settled") or {}, results.get("latency_settled") or {}
    pending = "; ".join(f"{t}: {', '.join(r)}" for t, r in wait["waited_for"].items())
    return [
        ("settled: waited for autovacuum", wait["waited_s"], "s",
         ("settled" if wait["settled"] else "NOT settled (timeout)")
         + (f"; waited for {pending}" if pending else "")
         + ("; a checkpoint under way" if wait.get("checkpoint_under_way") else "")),
        ("settled: pipeline cores at low rate", results.get("pipeline_cores_at_low_rate_settled"),
         "cores", ""),
        ("settled: latency p50 / p99 at low rate", low.get("p50_ms"), "ms",
         f"p99 {_num(low.get('p99_ms'))} ms at {_num(low.get('achieved_rate_per_s'))}/s"),
        ("settled: latency p50 / p99", lat.get("p50_ms"), "ms",
         f"p99 {_num(lat.get('p99_ms'))} ms at {_num(lat.get('achieved_rate_per_s'))}/s"),
    ]


def _database(db: dict[str, Any]) -> str:
    """What PostgreSQL did in one second (``bench.dbwatch``), briefly; "" if nothing."""
    said = [f"vacuum {', '.join(db['vacuum'])}" if db.get("vacuum") else "",
            f"analyze {', '.join(db['analyze'])}" if db.get("analyze") else "",
            f"{db['lock_waits']} waiting for a lock" if db.get("lock_waits") else "",
            f"{db['autovacuum_workers']} autovacuum workers"
            if db.get("autovacuum_workers") else "",
            "checkpoint started" if db.get("checkpoint_started")
            else "checkpoint" if db.get("checkpoint") else "",
            f"{db['wal_fpi']} full-page images" if db.get("wal_fpi") else ""]
    return "; ".join(s for s in said if s)


def by_second_lines(label: str, run: dict[str, Any]) -> list[str]:
    """A latency phase second by second (p50/p99 ms, what PostgreSQL did), then the
    server log's autovacuum and checkpoint lines of the phase."""
    rows = run.get("by_second")
    if not rows:
        return []
    cells = []
    for row in rows:
        said = _database(row.get("database") or {})
        if row.get("harness_gc_ms"):  # the harness's own collector (gcstats.OwnPauses)
            said = "; ".join(filter(None, [said, f"harness gc {row['harness_gc_ms']} ms"]))
        cells.append(f"s{row['second']} {row['p50_ms']}/{row['p99_ms']}"
                     + (f" [{said}]" if said else ""))
    lines = [f"  latency at {label} by second (p50/p99 ms; PostgreSQL): " + ", ".join(cells)]
    collected = [f"{name} {g['gen0']:.0f}/{g['gen1']:.0f}/{g['gen2']:.0f} in {g['ms']} ms"
                 f" (longest <= {g['longest_under_ms']} ms)"
                 for name, g in (run.get("gc") or {}).items() if g.get("ms")]
    own = run.get("harness_gc") or {}
    if own.get("ms"):
        collected.append(f"bench harness {own['gen0']:.0f}/{own['gen1']:.0f}/{own['gen2']:.0f}"
                         f" in {own['ms']} ms (longest {own['longest_ms']} ms)")
    if collected:
        lines.append("    collector (gen0/1/2 collections): " + "; ".join(collected))
    lines += [f"    postgres log: {line}" for line in run.get("database_log") or []]
    return lines


def save(results: dict[str, Any], mode: str) -> list[Path]:
    """``bench/results/<timestamp>-<mode>.json`` and ``latest-<mode>.json``."""
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime())
    data = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    paths = [RESULTS / f"{stamp}-{mode}.json", RESULTS / f"latest-{mode}.json"]
    for path in paths:
        path.write_bytes(data + b"\n")
    return paths
