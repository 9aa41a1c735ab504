"""The services' garbage collector pauses between two scrapes of their ``/metrics``
(``bonychat_gc_pause_seconds``, ``bonychat_gc_cpu_seconds_total``): ``bench.lowload``
and each latency phase of ``bench.latency`` (a phase's tail checked against the collector).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from . import e2e

_GC = re.compile(r'^bonychat_gc_(?:pause_seconds_(count|sum|bucket)|cpu_seconds_(total))'
                 r'\{(?:generation="(\d)")?,?'
                 r'(?:le="([^"]+)",?)?(?:generation="(\d)")?\} ([0-9.e+]+)$', re.M)


def scraped(world: e2e.World) -> Iterator[tuple[str, str]]:
    """Each listening service process's name and ``/metrics`` text (those that do not
    answer are left out)."""
    for process in world.processes:
        try:
            text = process.metrics()
        except OSError:
            continue
        if text is not None:
            yield process.name, text


def gc_counters(world: e2e.World) -> dict[str, dict[str, float]]:
    """Each service process's collector pauses so far (``bonychat_gc_pause_seconds``):
    count and seconds per generation, and the count per bucket bound (``le:BOUND``)."""
    found: dict[str, dict[str, float]] = {}
    for name, text in scraped(world):
        mine = found.setdefault(name, {})
        for kind, cpu, gen_a, le, gen_b, value in _GC.findall(text):
            key = f"le:{le}" if kind == "bucket" else f"{kind or cpu}:{gen_a or gen_b}"
            mine[key] = mine.get(key, 0.0) + float(value)
    return found


def gc_pauses(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
              ) -> dict[str, dict[str, float]]:
    """Per service between two scrapes: collections of each generation, their ms in all,
    and the bucket bound (ms) of the longest pause."""
    out: dict[str, dict[str, float]] = {}
    for name, now in after.items():
        then = before.get(name, {})
        row = {f"gen{g}": now.get(f"count:{g}", 0) - then.get(f"count:{g}", 0)
               for g in range(3)}
        row["ms"] = round(sum(now.get(f"sum:{g}", 0) - then.get(f"sum:{g}", 0)
                              for g in range(3)) * 1000, 1)
        row["cpu_ms"] = round(sum(now.get(f"total:{g}", 0) - then.get(f"total:{g}", 0)
                                  for g in range(3)) * 1000, 1)
        total = now.get("le:+Inf", 0) - then.get("le:+Inf", 0)
        under = [float(k[3:]) for k in now if k.startswith("le:") and k != "le:+Inf"
                 and now[k] - then.get(k, 0) >= total]
        # every pause of the interval is at most this (ms); -1: some exceeded every bound
        row["longest_under_ms"] = (0.0 if not total else
                                   round(min(under) * 1000, 1) if under else -1.0)
        out[name] = row
    return out
