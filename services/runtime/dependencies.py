"""Watch Kafka and PostgreSQL so that ``/healthz`` says not ready while one is down.

A service blocked on a dependency does not always fail (a consumer simply
fetches nothing while the broker is away; an idempotent producer retries until
the broker is back), so readiness cannot come from failures alone. Once a
second (``BONYCHAT_HEALTH_PROBE_SECONDS``) this watch asks each dependency a
trivial question with a short timeout: PostgreSQL ``SELECT 1`` on a connection
of its own, Kafka a metadata request through the process's producer. The HTTP
ingest also reads it to answer 503 at once while Kafka is down. A serve with
worker processes has one watch, in the parent (the workers serve no API, and the
parent's ``/healthz`` and ``bonychat_dependency_up`` speak for the whole serve).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer

from services.runtime.observability import Health
from services.runtime.retry import describe

log = logging.getLogger(__name__)
PROBE_TIMEOUT = 2.0
KAFKA = "kafka"
POSTGRES = "postgresql"


class DependencyWatch:
    """Probes the configured dependencies and records the result in :class:`Health`."""

    def __init__(self, health: Health, *, postgres: dict[str, Any] | None = None,
                 producer: AIOKafkaProducer | None = None,
                 interval: float = 1.0) -> None:
        self.health = health
        self.postgres = postgres
        self.producer = producer
        self.interval = interval
        self._conn: psycopg.Connection[Any] | None = None
        self._pg_probe: asyncio.Future[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self.check()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            await self._close()

    async def check(self) -> None:
        """Probe every dependency once (concurrently) and record what was found."""
        probes = []
        if self.postgres is not None:
            probes.append(self._record(POSTGRES, self._postgres()))
        if self.producer is not None:
            probes.append(self._record(KAFKA, self._kafka(self.producer)))
        await asyncio.gather(*probes)

    async def _record(self, name: str, probe: Any) -> None:
        try:
            await asyncio.wait_for(probe, PROBE_TIMEOUT)
        except Exception as exc:  # any failure of the probe means "not reachable"
            if self.health.dependency_up(name):
                log.warning("%s unreachable", name, extra={"dependency": name,
                                                           "error": describe(exc)})
            self.health.set_dependency(name, False, describe(exc))
            return
        if not self.health.dependency_up(name):
            log.info("%s reachable again", name, extra={"dependency": name})
        self.health.set_dependency(name, True)

    async def _postgres(self) -> None:
        """``SELECT 1`` in a worker thread; a probe still hanging means "down".

        A server that accepts connections but answers nothing (frozen, or a
        network that drops packets) cannot be timed out from the client without
        its cooperation (cancelling needs the server), so the probe is not
        cancelled: it is awaited for at most ``PROBE_TIMEOUT`` each round, and
        no second one starts while it hangs.
        """
        if self._pg_probe is None or self._pg_probe.done():
            self._pg_probe = asyncio.ensure_future(asyncio.to_thread(self._select_one))
        await asyncio.shield(self._pg_probe)

    def _select_one(self) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    **{**(self.postgres or {}), "autocommit": True, "connect_timeout": 2,
                       "application_name": "bonychat-health"})
            self._conn.execute("SELECT 1")
        except Exception:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            raise

    @staticmethod
    async def _kafka(producer: AIOKafkaProducer) -> None:
        await producer.client.fetch_all_metadata()

    async def _close(self) -> None:
        probe = self._pg_probe
        if probe is not None and not probe.done():
            return  # hanging on a frozen server: its thread ends with the process
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(conn.close)
