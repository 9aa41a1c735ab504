"""Wake the event store's followers (projections, relay) when events are committed.

The conversation service's commit runs ``NOTIFY stored_events`` in its
transaction (as eventsourcing's recorder does), so PostgreSQL tells every
session that ``LISTEN``s on that channel right after the commit. A follower
that found nothing new waits here instead of sleeping a fixed 100 ms: it
wakes within a millisecond or so of the next commit, and only polls at the
slow fallback interval when no notification comes (SQLite, a lost
connection). A missed notification costs at most that interval, never an
event: the follower always reads from its own tracked position. After a short
page the follower waits here at once rather than reading again to find
nothing: a commit after its read has notified this connection already (the
notification waits in the socket until the next ``wait``).

The channel is not schema-qualified (eventsourcing's name), so followers of
other schemas in the same database are woken too, and simply find nothing.

``min_interval`` paces a follower when events trickle in: a notification that
comes sooner than that after the previous wake-up waits out the rest, so the
commits of that interval are read as one page (one read, one write, one
produce request) instead of one page per commit. Under a backlog the follower
does not wait here at all (its pages are full), and an event after a quiet spell
is read at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

log = logging.getLogger(__name__)
CHANNEL = "stored_events"
STOP_CHECK = 0.25
POLL_SECONDS = 0.1  # without LISTEN (SQLite, connection down): poll as before


class Wakeup:
    """``LISTEN`` on its own autocommit connection; ``None`` conninfo means polling only."""

    def __init__(self, conninfo: dict[str, Any] | None, channel: str = CHANNEL,
                 min_interval: float = 0.0) -> None:
        self.conninfo = conninfo
        self.channel = channel
        #: seconds between two wake-ups at the least (see the module docstring)
        self.min_interval = min_interval
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._failed_at: float | None = None
        self._woken = float("-inf")  # loop time of the last wake-up

    async def _connection(self) -> psycopg.AsyncConnection[Any] | None:
        if self.conninfo is None:
            return None
        if self._conn is not None and not self._conn.closed:
            return self._conn
        loop = asyncio.get_running_loop()
        if self._failed_at is not None and loop.time() - self._failed_at < 5:
            return None  # retry connecting every few seconds, poll meanwhile
        try:
            conn = await psycopg.AsyncConnection.connect(
                **{**self.conninfo, "autocommit": True,
                   "application_name": "bonychat-wakeup"})
            await conn.execute(SQL("LISTEN {}").format(Identifier(self.channel)))
        except psycopg.Error as exc:
            log.warning("cannot LISTEN for new events (polling instead): %s", exc)
            self._failed_at = loop.time()
            return None
        self._conn, self._failed_at = conn, None
        return conn

    async def listen(self) -> None:
        """``LISTEN`` now (a follower calls it before its first read, so that no
        commit after that read goes unnoticed); polling if it cannot."""
        await self._connection()

    async def wait(self, stop: asyncio.Event, timeout: float) -> None:
        """Return on a notification, soon after ``stop``, or after ``timeout`` seconds.

        Never sooner than ``min_interval`` after the previous return (unless stopped).
        """
        await self._wait(stop, timeout)
        loop = asyncio.get_running_loop()
        pause = self._woken + self.min_interval - loop.time()
        if pause > 0 and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
        self._woken = loop.time()

    async def _wait(self, stop: asyncio.Event, timeout: float) -> None:
        if stop.is_set():
            return
        conn = await self._connection()
        if conn is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(timeout, POLL_SECONDS))
            return
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while not stop.is_set():
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    return
                # Slices of at most STOP_CHECK seconds notice ``stop`` without
                # cancelling a wait inside psycopg; the generator runs to its end
                # (it holds the connection's lock until then).
                notified = False
                async for _ in conn.notifies(timeout=min(left, STOP_CHECK), stop_after=1):
                    notified = True
                if notified:
                    return
        except psycopg.Error as exc:
            log.warning("LISTEN connection failed (polling until it is back): %s", exc)
            await self.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()


def make_wakeup(database_url: str, is_postgres: bool, min_interval: float = 0.0) -> Wakeup:
    """A LISTEN-based wakeup on PostgreSQL, plain polling otherwise."""
    if not is_postgres:
        return Wakeup(None, min_interval=min_interval)
    from services.composition.postgres import parse_url

    return Wakeup(dict(parse_url(database_url).params), min_interval=min_interval)
