"""The inactivity sweep inside ``bonychat serve`` (CONTRACT §6.4): every 30 s, wall clock.

The read model names contacts whose open conversation looks expired; each one
gets an :class:`~schemas.commands.ExpireInactive` command, and the contact
aggregate decides, like for every other command:

- embedded (no Kafka): decided in-process under the sink's lock, so requests and
  sweeps never interleave on an aggregate;
- Kafka: the commands are published to the command topic keyed
  ``workspace_id:contact_id``, so the conversation service copy that owns the
  contact's partition decides them in order with the contact's own events. The
  sweep never writes to the event store itself: a sweep and the contact's next
  event can never both close one conversation (the second finds none open).

It lives on the read side (the read model finds the candidates) and only sends
commands to the write side, which never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from schemas.commands import ExpireInactive
from services.composition import Stores
from services.projections.application.queries import sweep_commands
from services.runtime.observability import RuntimeMetrics

log = logging.getLogger(__name__)
SWEEP_SECONDS = 30.0
Submit = Callable[[list[ExpireInactive]], Awaitable[None]]


class InactivitySweep:
    """Runs :func:`~services.projections.application.queries.sweep_commands`; hands them on."""

    def __init__(self, *, stores: Stores, submit: Submit, metrics: RuntimeMetrics,
                 interval: float = SWEEP_SECONDS) -> None:
        self.stores = stores
        self.submit = submit
        self.metrics = metrics
        self.interval = interval

    async def sweep_once(self, now: datetime | None = None) -> int:
        """One sweep at ``now`` (default: the wall clock); returns the contacts asked."""
        moment = now or datetime.now(UTC)
        commands = await asyncio.to_thread(sweep_commands, self.stores.events,
                                           self.stores.read_models, moment)
        for start in range(0, len(commands), 1_000):
            await self.submit(commands[start:start + 1_000])
        self.metrics.sweeps.labels("sweeps").inc()
        self.metrics.sweeps.labels("contacts").inc(len(commands))
        return len(commands)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                asked = await self.sweep_once()
                if asked:
                    log.info("inactivity sweep", extra={"contacts": asked})
            except Exception as exc:  # a failed sweep is retried at the next tick
                log.warning("inactivity sweep failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
