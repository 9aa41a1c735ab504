"""The services' garbage collector pauses between two scrapes of their ``/metrics``
(``bonychat_gc_pause_seconds``, ``bonychat_gc_cpu_seconds_total``): ``bench.lowload``
and each latency phase of ``bench.latency`` (a phase's tail checked against the collector).
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

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


class OwnPauses:
    """This process's (the harness's) collector pauses while in the ``with`` block.

    The latency poller stamps an event visible when its poll returns; a pause of the
    harness's own collector (its heap holds a run's inputs) delays the stamps behind it,
    and would read as the pipeline's latency. Each pause is kept with its start
    (``time.perf_counter``), so a slow second can be checked against it.
    """

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float, int]] = []  # start, seconds, generation
        self._started: float | None = None

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
        elif self._started is not None:
            self.pauses.append((self._started, now - self._started, info["generation"]))
            self._started = None

    def __enter__(self) -> OwnPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, float]:
        """Collections per generation, their ms in all and the longest (ms)."""
        row: dict[str, float] = {f"gen{g}": sum(1 for *_, gen in self.pauses if gen == g)
                                 for g in range(3)}
        row["ms"] = round(sum(s for _, s, _ in self.pauses) * 1000, 1)
        row["longest_ms"] = round(max((s for _, s, _ in self.pauses), default=0.0) * 1000, 1)
        return row

    def ms_by_second(self, start: float, seconds: int) -> list[float]:
        """ms of pauses that began in each second from ``start`` (``perf_counter``)."""
        out = [0.0] * seconds
        for began, length, _ in self.pauses:
            index = int(began - start)
            if 0 <= index < seconds:
                out[index] += length * 1000
        return [round(ms, 1) for ms in out]


#: ``gc.set_threshold``'s third value inside :func:`frozen_heap`: full collections wait
#: for this many young-generation-1 collections (a 5,000/s phase runs ~50)
NO_FULL_COLLECTIONS = 1_000_000


@contextmanager
def frozen_heap() -> Iterator[None]:
    """What this process holds on entry is left out of its collections until exit,
    and no full collection runs meanwhile (the young generations still do).

    A full collection walks every tracked object; the harness holds a run's inputs
    (a million gateway records and what was built from them), so each one paused it
    for 180-280 ms in a 5,000/s latency phase. Collected once first, then frozen
    (``gc.freeze``); with that alone the phase's own objects (a future, a stamp and
    a callback per event) still cost four full collections of 60-150 ms, so those
    wait for the end of the block. Garbage in cycles that outlives the young
    generations waits too: a phase's worth, collected on exit.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(thresholds[0], thresholds[1], NO_FULL_COLLECTIONS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
