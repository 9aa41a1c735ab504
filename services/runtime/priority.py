"""CPU priority of a process that runs only followers (issue 13).

On a machine where every service shares the cores, the conversation service sets
the pace: the relay and the projections follow the event store, so whatever CPU
they take while the conversation service waits for a core only delays the events
they are about to read. A process running nothing but followers therefore lowers
its own priority (``BONYCHAT_FOLLOWER_NICENESS``, default 10). It never starves:
``nice`` only orders who runs first when the cores are all busy, and at low load
nothing is waiting for them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

log = logging.getLogger("bonychat.serve")
FOLLOWERS = frozenset({"relay", "projections"})


def is_followers_only(names: Iterable[str]) -> bool:
    """True when every service named is a follower (and there is at least one)."""
    chosen = set(names)
    return bool(chosen) and chosen <= FOLLOWERS


def lower_follower_priority(names: Iterable[str], niceness: int, *, kafka: bool,
                            nice: Callable[[int], int] = os.nice) -> int:
    """Lower this process's priority by ``niceness`` if it runs only followers on
    Kafka; returns the increment applied (0 when it was left alone)."""
    names = list(names)
    if niceness <= 0 or not kafka or not is_followers_only(names):
        return 0
    try:
        nice(niceness)
    except OSError as exc:  # not allowed here (a sandbox): keep going at normal priority
        log.warning("could not lower the followers' CPU priority: %s", exc)
        return 0
    log.info("followers at a lower CPU priority", extra={"services": names,
                                                         "niceness": niceness})
    return niceness
