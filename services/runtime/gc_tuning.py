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
and the thresholds make young collections ~70 times rarer. Cyclic garbage is
still collected, later; reference counting frees everything else at once.

``BONYCHAT_GC_TUNING=0`` leaves Python's defaults (to compare, or to rule it out).
"""

from __future__ import annotations

import gc

from services.settings import Settings

THRESHOLDS = (50_000, 50, 100)


def tune_gc(settings: Settings) -> bool:
    """Freeze what start-up allocated and raise the thresholds; False when disabled."""
    if not settings.gc_tuning:
        return False
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    return True
