"""Garbage-collector settings for the long-running and bulk commands.

Every command that moves many events (``bonychat import``, ``replay``, ``serve``)
allocates millions of short-lived objects, nearly none of them in reference
cycles. With Python's default thresholds (700, 10, 10) the collector runs a
young-generation pass every 700 net allocations and traverses the whole heap
(the aggregate cache, modules, pydantic schemas) every 70,000; profiled under a
backlog that was up to 41 % of the conversation service's CPU, with full
collections of 255 ms on average. ``tune_gc`` is called once start-up is done:
``gc.freeze()`` moves everything allocated so far (imported modules, the stores,
the services) into a permanent generation that collections never traverse again,
and the thresholds make young collections rarer. Cyclic garbage is still
collected, later; reference counting frees everything else at once.

The young threshold (``BONYCHAT_GC_YOUNG_THRESHOLD``, default 1,000,000): a
young collection traverses every young object still alive, and a service
keeps one or two batches of a few thousand events alive (records, commands,
events: some 150,000 tracked objects) for longer than 50,000 allocations, so
at 50,000 each collection walked ~50,000 live objects (~18 ms in the
conversation service with the gateway input: ~2.4 µs per event). At 1,000,000
most objects are freed before any collection sees them, and each collection
walks roughly the same live set for 20 times the allocations
(docs/runtime.md, "The young-generation threshold").

``BONYCHAT_GC_TUNING=0`` leaves Python's defaults (to compare, or to rule it out).

``serve`` does not collect at all while it starts (:func:`pause_gc`, :func:`resume_gc`):
what start-up allocates is nearly all kept (modules, classes, schemas), and the
collections that ran while it was made were ~10 % of a start-up's CPU.

:func:`time_gc_pauses` times every collection of the process into
``bonychat_gc_pause_seconds`` (by generation), so that a latency tail can be
checked against the collector's pauses (docs/runtime.md, "Low load").
"""

from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING, Any

from services.settings import Settings

if TYPE_CHECKING:  # the CLI tunes the collector without loading the services' metrics
    from services.runtime.observability import RuntimeMetrics

#: the middle and old generations' thresholds (the young one is the setting)
OLDER_THRESHOLDS = (50, 100)
THRESHOLDS = (Settings.model_fields["gc_young_threshold"].default, *OLDER_THRESHOLDS)


def pause_gc() -> None:
    """No collection during start-up (until :func:`resume_gc`): loading the code allocates
    a few hundred thousand objects that all live on, and collecting them while they are
    made cost ~10 % of a start-up's CPU (issue 13)."""
    gc.disable()


def resume_gc() -> None:
    """Collect again: start-up is done, or the process waits for a dependency (a wait of
    any length must not hold back the cyclic garbage its retries make)."""
    gc.enable()


def tune_gc(settings: Settings) -> bool:
    """Freeze what start-up allocated and raise the thresholds; False when disabled."""
    if not settings.gc_tuning:
        return False
    gc.freeze()
    gc.set_threshold(settings.gc_young_threshold, *OLDER_THRESHOLDS)
    return True


class _PauseTimer:
    """A ``gc.callbacks`` entry: each collection's start to stop, observed by generation."""

    def __init__(self, metrics: RuntimeMetrics) -> None:
        self.by_generation = [metrics.gc_pause.labels(str(g)) for g in range(3)]
        self.cpu_by_generation = [metrics.gc_cpu.labels(str(g)) for g in range(3)]
        self.started = self.started_cpu = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started, self.started_cpu = time.perf_counter(), time.thread_time()
        elif self.started:
            generation = min(int(info.get("generation", 2)), 2)
            self.by_generation[generation].observe(time.perf_counter() - self.started)
            self.cpu_by_generation[generation].inc(
                max(0.0, time.thread_time() - self.started_cpu))
            self.started = 0.0


def time_gc_pauses(metrics: RuntimeMetrics) -> None:
    """Time the collector's pauses into ``metrics`` (the process's one timer: a second
    call, e.g. another ``serve`` in the same process, replaces the first)."""
    gc.callbacks[:] = [c for c in gc.callbacks if not isinstance(c, _PauseTimer)]
    gc.callbacks.append(_PauseTimer(metrics))
