"""``bonychat serve`` with worker processes: one child process per service, supervised.

With every service in one process they share one interpreter lock, so a
``serve`` of ingest, conversation and projections uses one core however many
the machine has. When the machine lends this process two or more CPUs
(``os.sched_getaffinity``), ``BONYCHAT_SERVE_PROCESSES=auto`` (the default)
and the Kafka runtime is on, the parent starts each service as a child
``bonychat serve --services X`` (the layout every service is also run in alone)
and serves the one HTTP API itself:

- ``/metrics`` adds every child's metrics (:mod:`.merged_metrics`);
- ``/healthz`` is ready only while every child answers ready (component
  ``worker:X``; a child that is restarting or not ready says why);
- a child that exits while the parent runs is started again after a backoff
  (1 s, 2 s, 4 s ... 30 s); after :data:`QUICK_FAILURES` exits in a row, each
  within :data:`HEALTHY_SECONDS` of its start, the parent logs ``worker X keeps
  failing`` and ``serve`` stops with status 1 (a bad setting or a bug is not
  retried forever unnoticed);
- the parent starts the children's processes first of all (:meth:`Supervisor.launch_all`:
  each loads its code, which takes most of a start-up, while the parent loads its own
  and reaches the dependencies), but a child opens nothing until the parent has reached
  the dependencies itself (database, Kafka; waiting for them as :mod:`.starting` says)
  and says go (:meth:`Supervisor.start_all`); if the parent has to wait for one, it
  withdraws them first (:meth:`Supervisor.withdraw_all`: they exit, status 0) and starts
  them afresh later. Only the parent watches the dependencies (:mod:`.dependencies`):
  one probe per serve, one process that waits and says so at start-up, one error line
  when waiting cannot help;
- SIGTERM/SIGINT are passed on as SIGTERM to every child (each stops its
  consumers and commits its positions), then the parent stops; a child still
  running after :data:`STOP_SECONDS` is killed;
- a child ends with its parent: it asks the kernel for SIGTERM when the parent
  dies (``PR_SET_PDEATHSIG``, :mod:`.worker_side`), so a ``kill -9`` of the
  parent leaves no orphans.

``BONYCHAT_SERVE_PROCESSES=1`` keeps everything in one process, as on one CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from services.runtime.observability import Health
from services.runtime.worker_process import (
    FIRST_DELAY,
    HEALTHY_SECONDS,
    MAX_DELAY,
    QUICK_FAILURES,
    RestartPolicy,
    Worker,
    launch,
    read_port,
    release,
    spawn,
    withdraw,
    worker_command,
    worker_env,
)
from services.settings import Settings

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("bonychat.serve")
__all__ = ["FIRST_DELAY", "HEALTHY_SECONDS", "MAX_DELAY", "QUICK_FAILURES", "STOP_SECONDS",
           "RestartPolicy", "Supervisor", "Worker", "WorkerFailed", "available_cpus",
           "not_ready_reason", "plan_workers", "read_port", "spawn", "worker_command",
           "worker_env"]

#: how long children get to stop after SIGTERM before they are killed (a serve gives
#: its own services 15 s, then cancels them and closes its clients)
STOP_SECONDS = 20.0
PROBE_TIMEOUT = 2.0


class WorkerFailed(Exception):
    """A worker process kept exiting: ``serve`` stops (status 1) instead of looping."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; cpu_count where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def plan_workers(names: Sequence[str], settings: Settings, cpus: int) -> list[str]:
    """The ``--services`` value of each worker process; [] to run everything in this one.

    One worker per service; the relay stays inside the conversation worker when
    it runs there anyway (``BONYCHAT_RELAY_WITH_CONVERSATION``, the default).
    """
    if settings.serve_processes != "auto" or cpus < 2 or not settings.kafka_bootstrap:
        return []
    groups = [[name] for name in names if name != "http"]
    if "relay" in names and "conversation" in names and settings.relay_with_conversation:
        groups = [g for g in groups if g != ["relay"]]
        groups = [["conversation", "relay"] if g == ["conversation"] else g for g in groups]
    return [",".join(g) for g in groups] if len(groups) >= 2 else []


class Supervisor:
    """Runs the workers until ``stop``; the runner ``serve`` supervises like a service."""

    def __init__(self, groups: Sequence[str], health: Health, *, probe_seconds: float,
                 starter: Callable[[Worker], object] = spawn,
                 launcher: Callable[[Worker], object] = launch,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = [Worker(services) for services in groups]
        self.health = health
        self.probe_seconds = probe_seconds
        self.starter = starter
        self.launcher = launcher  # a process that waits for go (release) before it starts
        self.clock = clock
        for worker in self.workers:
            health.expect(worker.component)

    def ports(self) -> list[int]:
        """Listeners of the running workers (for ``/metrics``)."""
        return [w.port for w in self.workers if w.running and w.port is not None]

    async def run(self, stop: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for worker in self.workers:
                    group.create_task(self.keep(worker, stop), name=worker.component)
                group.create_task(self.probe(stop), name="worker probe")
        except* WorkerFailed as failed:
            raise failed.exceptions[0] from None
        finally:
            await self.stop_all()

    async def keep(self, worker: Worker, stop: asyncio.Event) -> None:
        """Start ``worker``, and again after each exit, until ``stop`` or it keeps failing."""
        while not stop.is_set():
            if not worker.running:  # start_all may have started it already
                await self.start(worker)
            code = await self.exit_or_stop(worker, stop)
            if code is None:
                return
            delay = worker.policy.after_exit(self.clock() - worker.started)
            if delay is None:
                detail = (f"worker {worker.services} keeps failing: exited {worker.policy.failures}"
                          f" times within {worker.policy.healthy_seconds:.0f} s of its start "
                          f"(last exit status {code}); stopping serve")
                log.error(detail, extra={"worker": worker.services, "status": code})
                raise WorkerFailed(detail)
            reason = f"exited with status {code}; restarting in {delay:.0f} s"
            self.health.set_degraded(worker.component, reason)
            log.error("worker %s %s", worker.services, reason,
                      extra={"worker": worker.services, "status": code})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def launch_all(self) -> None:
        """Start every worker's process ahead: it loads its code, then waits for go."""
        for worker in self.workers:
            launched = self.launcher(worker)
            if asyncio.iscoroutine(launched):
                await launched

    async def withdraw_all(self) -> None:
        """The launched workers exit (status 0) without starting: the parent must wait."""
        held = [w for w in self.workers if w.go_fd is not None]
        for worker in held:
            withdraw(worker)
        await asyncio.gather(*(self.reap(worker) for worker in held if worker.running))

    async def start_all(self) -> None:
        """Start every worker now (once this process has reached its dependencies):
        a launched one is told go, any other is started."""
        for worker in self.workers:
            if worker.running and worker.go_fd is not None:
                release(worker)
                worker.started = self.clock()
                self.log_started(worker)
            else:
                withdraw(worker)  # it exited while held: start it afresh
                await self.start(worker)

    async def start(self, worker: Worker) -> None:
        started = self.starter(worker)
        if asyncio.iscoroutine(started):
            await started
        self.log_started(worker)

    def log_started(self, worker: Worker) -> None:
        log.info("worker %s started", worker.services,
                 extra={"worker": worker.services, "pid": self.pid(worker)})

    async def exit_or_stop(self, worker: Worker, stop: asyncio.Event) -> int | None:
        """The worker's exit status, or None once ``stop`` is set (the worker is stopped)."""
        assert worker.process is not None
        exited = asyncio.ensure_future(worker.process.wait())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if stop.is_set():
            exited.cancel()
            return None
        return exited.result()

    @staticmethod
    def pid(worker: Worker) -> int | None:
        return worker.process.pid if worker.process is not None else None

    async def stop_all(self) -> None:
        """SIGTERM every running worker, wait :data:`STOP_SECONDS`, kill the rest.

        One still held (launched, no go yet) is withdrawn instead: it may still be
        loading its code, and exits with status 0 once it reads the closed pipe.
        """
        running = [w for w in self.workers if w.running]
        signalled = [w for w in running if w.go_fd is None]
        for worker in self.workers:
            withdraw(worker)
        for worker in signalled:
            assert worker.process is not None
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        await asyncio.gather(*(self.reap(worker) for worker in running))

    async def reap(self, worker: Worker) -> None:
        assert worker.process is not None
        try:
            code = await asyncio.wait_for(worker.process.wait(), STOP_SECONDS)
        except TimeoutError:
            log.warning("worker %s did not stop in time; killing it", worker.services)
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            code = await worker.process.wait()
        if code != 0:
            log.warning("worker %s stopped with status %s", worker.services, code,
                        extra={"worker": worker.services, "status": code})

    async def probe(self, stop: asyncio.Event) -> None:
        """Every ``probe_seconds``: each worker's ``/healthz`` into this process's health."""
        import aiohttp  # not before the workers are launched (launch_all)

        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                for worker in self.workers:
                    await self.probe_one(session, worker)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.probe_seconds)

    async def probe_one(self, session: aiohttp.ClientSession, worker: Worker) -> None:
        from aiohttp import ClientError

        if not worker.running:
            return  # keep() says why
        if worker.port is None:
            self.health.set_degraded(worker.component, "starting")
            return
        try:
            async with session.get(f"http://127.0.0.1:{worker.port}/healthz") as reply:
                info = await reply.json()
        except (ClientError, TimeoutError, ValueError) as exc:
            self.health.set_degraded(worker.component, f"not answering: {exc or type(exc)}")
            return
        if info.get("ready"):
            self.health.set_ready(worker.component)
        else:
            self.health.set_degraded(worker.component, not_ready_reason(info))


def not_ready_reason(info: dict[str, object]) -> str:
    """One line from a worker's ``/healthz`` body: what it waits for."""
    parts = []
    for key in ("failed", "retrying", "down"):
        value = info.get(key)
        if isinstance(value, dict) and value:
            parts += [f"{name}: {why}" for name, why in value.items()]
    components = info.get("components")
    if not parts and isinstance(components, dict):
        parts = [f"{name} not ready" for name, ok in components.items() if not ok]
    return "; ".join(parts) or "not ready"
