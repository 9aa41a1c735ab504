"""Single-active locks: only one copy of a follower (relay, projections) works at a time.

On PostgreSQL a session advisory lock on a dedicated connection: it is released
when the holder's connection ends, including after ``kill -9``. On SQLite (one
machine) an ``flock`` on a file beside the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import IO, Any, Protocol

import psycopg

from services.runtime.pg import lock_key
from services.runtime.retry import HEALTHY_SECONDS, Backoff, describe, is_transient

log = logging.getLogger(__name__)


class SingleActiveLock(Protocol):
    name: str

    async def try_acquire(self) -> bool: ...

    async def still_held(self) -> bool: ...

    async def release(self) -> None: ...


class AdvisoryLock:
    """``pg_try_advisory_lock`` on its own autocommit connection."""

    def __init__(self, conninfo: dict[str, Any], name: str) -> None:
        self.conninfo = conninfo
        self.name = name
        self.key = lock_key(name)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def try_acquire(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    **{**self.conninfo, "autocommit": True,
                       "application_name": f"bonychat-lock-{self.name}"[:63]})
            cur = await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
            row = await cur.fetchone()
        except psycopg.Error as exc:
            log.warning("lock %s: cannot ask PostgreSQL: %s", self.name, exc)
            await self._drop()
            return False
        return bool(row and row[0])

    async def still_held(self) -> bool:
        """True while the lock's connection is alive (the lock dies with it)."""
        if self._conn is None or self._conn.closed:
            return False
        try:
            await self._conn.execute("SELECT 1")
        except psycopg.Error:
            await self._drop()
            return False
        return True

    async def release(self) -> None:
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                await self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()


class FileLock:
    """``flock`` on ``PATH.NAME.lock``; the kernel drops it when the process dies."""

    def __init__(self, database_path: str, name: str) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        self.path = f"{os.path.abspath(database_path)}.{safe}.lock"
        self.name = name
        self._handle: IO[bytes] | None = None

    async def try_acquire(self) -> bool:
        handle = open(self.path, "ab")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._handle = handle
        return True

    async def still_held(self) -> bool:
        return self._handle is not None

    async def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def make_lock(database_url: str, is_postgres: bool, sqlite_path: str, name: str
              ) -> SingleActiveLock:
    """The single-active lock ``name`` for the configured database."""
    if not is_postgres:
        return FileLock(sqlite_path, name)
    from services.composition.postgres import parse_url

    target = parse_url(database_url)
    return AdvisoryLock(dict(target.params), f"{name}@{target.schema}")


async def acquire(lock: SingleActiveLock, stop: asyncio.Event, retry_seconds: float = 1.0
                  ) -> bool:
    """Wait until ``lock`` is ours (True) or ``stop`` is set (False)."""
    waited = False
    while not stop.is_set():
        if await lock.try_acquire():
            log.info("lock %s acquired", lock.name, extra={"lock": lock.name})
            return True
        if not waited:
            log.info("lock %s held by another copy; standing by", lock.name,
                     extra={"lock": lock.name})
            waited = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), retry_seconds)
    return False


async def while_leader(lock: SingleActiveLock, stop: asyncio.Event,
                       work: Callable[[asyncio.Event], Awaitable[None]],
                       backoff: Backoff | None = None) -> None:
    """Run ``work`` whenever this copy holds ``lock``, until ``stop`` is set.

    Standby copies wait in :func:`acquire`; if ``work`` returns (the lock's
    session was lost) the copy goes back to waiting for the lock. If ``work``
    fails because PostgreSQL or Kafka is unavailable, the lock is released and
    the copy waits (backoff), then competes for the lock again: ``work``
    restarts from its tracked position.
    """
    backoff = backoff if backoff is not None else Backoff()
    while not stop.is_set():
        if not await acquire(lock, stop):
            return
        started = time.monotonic()
        try:
            await work(stop)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if time.monotonic() - started > HEALTHY_SECONDS:
                backoff.reset()
            log.warning("lock %s: work failed, standing by before retrying", lock.name,
                        extra={"lock": lock.name, "error": describe(exc)})
            await lock.release()
            await backoff.sleep(stop)
            continue
        finally:
            await lock.release()
        backoff.reset()
