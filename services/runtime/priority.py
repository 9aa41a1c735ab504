"""CPU priority of a process that runs only followers (issue 13).

On a machine where every service shares the cores, the conversation service sets
the pace: the relay and the projections follow the event store, so whatever CPU
they take while the conversation service waits for a core only delays the events
they are about to read. A process running nothing but followers therefore lowers
its own priority (``BONYCHAT_FOLLOWER_NICENESS``, default 10). It never starves:
``nice`` only orders who runs first when the cores are all busy, and at low load
nothing is waiting for them.

Such a process lowers its priority as it starts (:func:`lower_at_start`, called by
the ``bonychat`` entry point before any of its code is loaded), not once its
settings are read: loading the code is ~1 s of CPU per process, and three processes
started together load it at once on two cores, the conversation service's own start
among them. Only the standard library is imported here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence

log = logging.getLogger("bonychat.serve")
FOLLOWERS = frozenset({"relay", "projections"})


class _AtStart:
    """What :func:`lower_at_start` did to this process."""

    applied = 0  #: the increment it applied (0: none)


_AT_START = _AtStart()


def split_services(text: str) -> list[str]:
    """The names of a ``--services`` value, as given (comma-separated, blanks dropped)."""
    return [n.strip() for n in text.split(",") if n.strip()]


def is_followers_only(names: Iterable[str]) -> bool:
    """True when every service named is a follower (and there is at least one)."""
    chosen = set(names)
    return bool(chosen) and chosen <= FOLLOWERS


def _lowers(names: Iterable[str], niceness: int, kafka: bool) -> bool:
    """The rule: a process that runs only followers on Kafka is lowered by a positive
    niceness."""
    return niceness > 0 and kafka and is_followers_only(names)


def lower_follower_priority(names: Iterable[str], niceness: int, *, kafka: bool,
                            nice: Callable[[int], int] = os.nice) -> int:
    """Lower this process's priority by ``niceness`` if it runs only followers on
    Kafka (less what :func:`lower_at_start` applied already); returns by how much it
    is lowered in all (0 when it was left alone)."""
    names = list(names)
    at_start = _AT_START.applied
    if not _lowers(names, niceness, kafka):
        if at_start:  # not a follower after all (cannot happen: same rule, same env)
            log.warning("CPU priority lowered at start by %d, and it stays lowered", at_start)
        return at_start
    increment = niceness - at_start  # what the start applied is not applied twice
    if increment > 0:
        try:
            nice(increment)
        except OSError as exc:  # not allowed here (a sandbox): keep going at normal priority
            log.warning("could not lower the followers' CPU priority: %s", exc)
            return at_start
    log.info("followers at a lower CPU priority", extra={"services": names,
                                                         "niceness": niceness})
    return niceness


def serve_services(argv: Sequence[str]) -> list[str] | None:
    """The names ``--services`` gives a ``serve`` command line (``bonychat``'s arguments;
    the last ``--services`` wins, as argparse reads it), or None: another command, or
    ``serve`` with its default services."""
    index = 0
    while index < len(argv) and argv[index].startswith("-"):  # options before the command
        index += 2 if argv[index] == "--database-url" else 1
    if index >= len(argv) or argv[index] != "serve":
        return None
    found: str | None = None
    rest = argv[index + 1:]
    for position, arg in enumerate(rest):
        if arg == "--":
            break
        if arg == "--services" and position + 1 < len(rest):
            found = rest[position + 1]
        elif arg.startswith("--services="):
            found = arg.partition("=")[2]
    return None if found is None else split_services(found)


def _setting(env: Mapping[str, str], name: str) -> str | None:
    """``BONYCHAT_<name>`` as the settings read it: any case, empty counts as unset."""
    wanted = f"bonychat_{name}"
    values = [value for key, value in env.items() if key.lower() == wanted and value]
    return values[-1] if values else None


def lower_at_start(argv: Sequence[str], env: Mapping[str, str],
                   nice: Callable[[int], int] = os.nice) -> int:
    """Lower this process's priority before its code loads, by the rule of
    :func:`lower_follower_priority`, when ``argv`` is a ``serve`` of followers only and
    ``env`` names a Kafka bootstrap; returns the increment applied. Anything unclear
    (a niceness the settings would refuse, say) is left to that later call, which
    applies only what is still missing."""
    names = serve_services(argv)
    if names is None:  # every other command: nothing to read
        return 0
    text = _setting(env, "follower_niceness")
    try:
        niceness = 10 if text is None else int(text)
    except ValueError:
        return 0
    if niceness > 19 or not _lowers(names, niceness, bool(_setting(env, "kafka_bootstrap"))):
        return 0
    try:
        nice(niceness)
    except OSError:  # not allowed: the later call says so in the log
        return 0
    _AT_START.applied = niceness
    return niceness
