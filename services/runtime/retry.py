"""Retry with backoff: the services outlive a PostgreSQL or Kafka outage.

A service that meets a *transient* failure (a lost or refused connection, a
server shutting down, a broker that does not answer) does not end its process:
it reports itself not ready, waits (exponential backoff with jitter, capped),
and resumes from its tracked position. Anything else (a bug, a bad setting)
still stops the process, so it is not retried forever unnoticed.

Resuming is always safe because every service resumes from a position stored
with (or after) its output: see docs/runtime.md, "Faults and recovery".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
)
from eventsourcing.persistence import InterfaceError, OperationalError

from services.conversation.application.ports import ConcurrencyConflict
from services.runtime.observability import Health

log = logging.getLogger(__name__)

#: Errors that mean "a dependency is (briefly) unavailable", never "our bug".
TRANSIENT: tuple[type[BaseException], ...] = (
    psycopg.OperationalError, psycopg.InterfaceError,  # lost, refused, admin shutdown
    OperationalError, InterfaceError,  # the same, wrapped by eventsourcing
    KafkaError,  # broker down, request timed out, coordinator moved...
    ConcurrencyConflict,  # another copy kept winning: resume from the tracked position
    ConnectionError, TimeoutError,
)
#: The idempotent producer lost its sequence state with the broker (seen after a
#: broker restart): it fails every send from then on, and only a new producer
#: (a new process: the supervisor restarts it) can go on. Not retried in place.
PRODUCER_FATAL: tuple[type[BaseException], ...] = (
    OutOfOrderSequenceNumber, ProducerFenced, InvalidProducerEpoch, InvalidProducerIdMapping)
#: A run that lasted this long before failing starts the backoff from the beginning.
HEALTHY_SECONDS = 30.0


def is_transient(exc: BaseException) -> bool:
    """True if ``exc`` (or an exception it was raised from) is a dependency failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, PRODUCER_FATAL):
            return False
        if isinstance(current, TRANSIENT):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, cut to 300 characters."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]


@dataclass
class Backoff:
    """Exponential delays with jitter: 0.2 s, 0.4 s, ... capped at ``maximum``."""

    initial: float = 0.2
    maximum: float = 5.0
    factor: float = 2.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor ** self.attempt)
        self.attempt += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0

    async def sleep(self, stop: asyncio.Event) -> bool:
        """Wait the next delay; False if ``stop`` was set meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.next_delay())
        return not stop.is_set()


async def retrying(name: str, work: Callable[[asyncio.Event], Awaitable[None]],
                   stop: asyncio.Event, health: Health, backoff: Backoff | None = None
                   ) -> None:
    """Run ``work(stop)`` until it returns; after a transient failure, back off and rerun.

    While it waits, the component ``name`` is not ready (``/healthz`` says 503
    with the reason); ``work`` reports itself ready again once it is back.
    """
    backoff = backoff if backoff is not None else Backoff()
    while not stop.is_set():
        started = time.monotonic()
        try:
            await work(stop)
            return
        except Exception as exc:
            if not is_transient(exc):
                raise
            if time.monotonic() - started > HEALTHY_SECONDS:
                backoff.reset()
            health.set_degraded(name, describe(exc))
            log.warning("%s: dependency failure, retrying", name,
                        extra={"service": name, "error": describe(exc),
                               "attempt": backoff.attempt + 1})
            if not await backoff.sleep(stop):
                return


async def bounded(awaitable: Awaitable[object], seconds: float, what: str) -> None:
    """Await a clean-up step for at most ``seconds``; log (never raise) a failure."""
    try:
        await asyncio.wait_for(awaitable, seconds)
    except Exception as exc:
        log.warning("%s failed: %s", what, describe(exc))
