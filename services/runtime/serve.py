"""``bonychat serve``: the selected services plus the HTTP app, until SIGTERM/SIGINT.

With ``BONYCHAT_KAFKA_BOOTSTRAP`` set, the services run against Kafka and the
configured database (PostgreSQL in production); without it, the HTTP surface is
served on the embedded pipeline (CONTRACT §5). With Kafka and two or more CPUs
the services run as worker processes under this one (:mod:`.workers`). Exit
status: 0 after a clean stop, 1 when a service or its infrastructure failed (or
a worker kept failing), 2 for an unknown service. Building the process (stores,
clients, services) is :mod:`.serve_start`; running and stopping it is here.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from services.runtime.gc_tuning import resume_gc, time_gc_pauses, tune_gc
from services.runtime.observability import Health, RuntimeMetrics, setup_logging
from services.runtime.priority import lower_follower_priority, split_services
from services.runtime.worker_fork import Forked, ForkedLauncher, prefork
from services.runtime.worker_side import (
    WorkerLink,
    end_with_parent,
    start_worker_http,
    wait_for_go,
)
from services.runtime.workers import STOP_SECONDS, Supervisor, available_cpus, plan_workers
from services.settings import Settings

if TYPE_CHECKING:
    from services.runtime.serve_start import Process

# The rest of the runtime (Kafka, PostgreSQL, the HTTP server) is loaded inside _serve:
# a serve with worker processes starts them first, so that they load their code while
# this process loads its own (start-up is mostly loading code: issue 13).
log = logging.getLogger("bonychat.serve")
SERVICES = ("ingest", "conversation", "relay", "projections")
#: ``--services http``: the HTTP API alone (every process serves it anyway)
HTTP_ONLY = "http"
SHUTDOWN_SECONDS = 15.0

__all__ = ["HTTP_ONLY", "SERVICES", "parse_services", "run_serve"]
#: what a worker launched ahead loads while it waits for its parent's go
PRELOAD = ("services.runtime.serve_start", "services.runtime.starting",
           "services.runtime.dependencies", "services.runtime.retry", "services.runtime.sinks",
           "services.conversation.entrypoints.kafka", "services.ingest.entrypoints.kafka",
           "services.projections.entrypoints.kafka", "services.projections.entrypoints.relay",
           "services.projections.entrypoints.sweep", "services.runtime.worker_listener",
           "services.composition.postgres")


def parse_services(text: str) -> list[str] | str:
    """The requested service names in canonical order, or an error message."""
    names = split_services(text)
    unknown = [n for n in names if n not in (*SERVICES, HTTP_ONLY)]
    if unknown:
        return (f"unknown service {unknown[0]!r} in --services "
                f"(choose from {', '.join((*SERVICES, HTTP_ONLY))})")
    if not names:
        return f"--services is empty (choose from {', '.join((*SERVICES, HTTP_ONLY))})"
    return [n for n in SERVICES if n in names] or [HTTP_ONLY]


def without_ingest(names: list[str], settings: Settings) -> list[str]:
    """``names`` without ingest when the conversation service reads the gateway topic.

    With ``BONYCHAT_CONVERSATION_INPUT=gateway`` (and Kafka) ingest has nothing to
    do: running it would forward every gateway record a second time. It is left
    out with one log line; ``--services ingest`` alone then serves the HTTP API only.
    """
    if "ingest" not in names or settings.conversation_input != "gateway" \
            or not settings.kafka_bootstrap:
        return names
    log.warning("ingest not started: with BONYCHAT_CONVERSATION_INPUT=gateway the "
                "conversation service reads the gateway topic itself")
    return [n for n in names if n != "ingest"] or [HTTP_ONLY]


def run_serve(services_csv: str, settings: Settings, worker: WorkerLink | None = None, *,
              child_main: Callable[[list[str]], int] | None = None) -> int:
    """Entry point of ``bonychat serve`` (``worker``: started by a parent serve).

    ``child_main``: the command line's entry (``services.cli.main.main``), which a
    worker forked from this process runs with its own arguments (:mod:`.worker_fork`);
    without it the workers are exec'd."""
    names = parse_services(services_csv)
    if isinstance(names, str):
        print(f"bonychat: error: {names}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    names = without_ingest(names, settings)
    lower_follower_priority(names, settings.follower_niceness,
                            kafka=bool(settings.kafka_bootstrap))
    if worker is not None and not end_with_parent(worker.parent):
        print("bonychat: error: the parent serve is gone", file=sys.stderr)
        return 1
    if worker is not None and worker.go_fd is not None \
            and not wait_for_go(worker.go_fd, PRELOAD):
        return 0  # the parent withdrew it before it started anything
    groups = [] if worker is not None else plan_workers(names, settings, available_cpus())
    if groups:
        log.info("services in worker processes", extra={"workers": groups})
        forked = (prefork(groups, PRELOAD, child_main)
                  if child_main is not None and settings.serve_worker_start == "fork" else {})
        return asyncio.run(_main([HTTP_ONLY], settings, groups=groups, forked=forked))
    return asyncio.run(_main(names, settings, worker=worker))


async def _main(names: list[str], settings: Settings, *, groups: list[str] | None = None,
                worker: WorkerLink | None = None, forked: dict[str, Forked] | None = None
                ) -> int:
    """``groups``: run them as worker processes, started first; ``worker``: this process
    is one. A start-up failure is one line on stderr, status 1."""
    stop = asyncio.Event()  # a stop signal from now on (while the code loads too)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if worker is not None:  # Ctrl-C reaches the parent, which stops its workers in order
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    supervisor = None
    if groups:  # their processes first: each loads its code while this one loads its own
        # (or, forked once this one had loaded it, they are adopted: worker_fork)
        launcher = ForkedLauncher(forked or {})
        supervisor = Supervisor(groups, Health(), probe_seconds=settings.health_probe_seconds,
                                launcher=launcher)
        try:
            await supervisor.launch_all()
        finally:
            launcher.discard()  # any not adopted (none, unless launching failed)
    try:
        from services.runtime.serve_start import StartupError
    except BaseException:
        if supervisor is not None:
            await supervisor.stop_all()
        raise
    try:
        return await _serve(names, settings, stop, supervisor=supervisor, worker=worker)
    except StartupError as exc:
        print(f"bonychat: error: {exc}", file=sys.stderr)
        return 1


async def _serve(names: list[str], settings: Settings, stop: asyncio.Event, *,
                 supervisor: Supervisor | None, worker: WorkerLink | None) -> int:
    from services.runtime.serve_start import (
        Process,
        StartupError,
        open_process_stores,
        start_embedded,
        start_kafka,
    )
    from services.runtime.starting import Startup

    registry = None
    if supervisor is not None:  # (a worker loads no HTTP client or server: aiohttp)
        from services.runtime.merged_metrics import MergedRegistry

        registry = MergedRegistry()
    proc = Process(settings, metrics=RuntimeMetrics(registry), worker=worker is not None,
                   health=supervisor.health if supervisor is not None else Health(), stop=stop)
    if supervisor is not None and registry is not None:
        proc.workers = supervisor
        registry.ports = proc.workers.ports
        proc.runners["workers"] = proc.workers.run
    # A dependency down at start-up is waited for (``/healthz`` 503 meanwhile).
    startup = Startup(proc.health, proc.metrics, proc.stop, host=settings.http_host,
                      port=settings.http_port,
                      before_waiting=partial(_before_waiting, proc))
    try:
        try:
            if not await open_process_stores(proc, startup):
                return 0  # stopped while waiting
            if settings.kafka_bootstrap:
                if not await start_kafka(proc, names, settings.kafka_bootstrap, startup):
                    return 0
            else:
                await start_embedded(proc)
            if proc.workers is not None:  # once this process reached its dependencies
                await proc.workers.start_all()
        except OSError as exc:  # the waiting app could not take the port
            raise StartupError(f"cannot listen on {settings.http_host}:{settings.http_port}: "
                               f"{exc.strerror or exc}") from None
        finally:
            await startup.done()
        if startup.bound_port != settings.http_port:  # port 0: keep the one already shown
            proc.settings = settings.model_copy(update={"http_port": startup.bound_port})
        try:
            if worker is not None:
                proc.http = await start_worker_http(proc.metrics, proc.health,
                                                    worker.report_fd)
            else:
                from services.runtime.http import start_http

                proc.http = await start_http(proc.settings, proc.sink, proc.stores,
                                             proc.metrics, proc.health)
        except OSError as exc:
            raise StartupError(f"cannot listen on {settings.http_host}:{settings.http_port}: "
                               f"{exc.strerror or exc}") from None
        tune_gc(settings)  # after start-up: what it allocated is frozen, never traversed again
        resume_gc()  # (paused since the command started: commands.serve)
        time_gc_pauses(proc.metrics)
        return await _supervise(proc)
    finally:
        await _teardown(proc)


async def _before_waiting(proc: Process) -> None:
    """A dependency is down at start-up: collect again while waiting, and the workers
    launched ahead exit (only this process waits and says so)."""
    resume_gc()
    if proc.workers is not None:
        await proc.workers.withdraw_all()


async def _supervise(proc: Process) -> int:
    """Run the services until a stop signal or the first failure that is not transient.

    A service that fails because Kafka or PostgreSQL is unavailable is run again
    after a backoff (:func:`.retry.retrying`); the dependency watch keeps
    ``/healthz`` honest meanwhile.
    """
    from services.runtime.dependencies import DependencyWatch
    from services.runtime.retry import retrying
    from services.runtime.serve_start import postgres_params

    tasks = {asyncio.create_task(retrying(name, run, proc.stop, proc.health), name=name)
             for name, run in proc.runners.items()}
    if proc.watch is None and proc.settings.is_postgres and not proc.worker:
        proc.watch = DependencyWatch(proc.health, postgres=postgres_params(proc.settings),
                                     interval=proc.settings.health_probe_seconds)
    watch = asyncio.create_task(proc.watch.run(proc.stop)) if proc.watch is not None else None
    stopper = asyncio.create_task(proc.stop.wait())
    done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
    failed = 0
    for task in done - {stopper}:
        exc = task.exception()
        if exc is not None:
            failed += 1
            proc.health.set_failed(task.get_name(), f"{type(exc).__name__}: {exc}")
            log.error("service %s failed: %s", task.get_name(), exc, exc_info=exc)
    if not proc.stop.is_set():
        log.info("stopping", extra={"reason": "service failure" if failed else "service ended"})
    else:
        log.info("stopping", extra={"reason": "signal"})
    proc.stop.set()
    stopper.cancel()
    if watch is not None:
        await asyncio.gather(watch, return_exceptions=True)
    if proc.sink is not None:
        proc.sink.closed = True
    pending = {t for t in tasks if not t.done()}
    if pending:
        # worker processes get their own SHUTDOWN_SECONDS and more (workers.STOP_SECONDS)
        bound = STOP_SECONDS + 5 if "workers" in proc.runners else SHUTDOWN_SECONDS
        finished, late = await asyncio.wait(pending, timeout=bound)
        for task in late:
            log.warning("service %s did not stop in time; cancelling", task.get_name())
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for task in finished:
            if not task.cancelled() and task.exception() is not None:
                failed += 1
                log.error("service %s failed while stopping: %s", task.get_name(),
                          task.exception())
    return 1 if failed else 0


async def _teardown(proc: Process) -> None:
    if proc.workers is not None:  # stopped during start-up: the runner never ran
        await proc.workers.stop_all()
    if proc.http is not None:
        await proc.http.cleanup()
    if proc.producer is not None:
        try:
            await proc.producer.stop()  # flushes what is still buffered
        except Exception as exc:
            log.warning("producer stop failed: %s", exc)
    if proc.stores is not None:
        await asyncio.to_thread(proc.stores.close)
    log.info("stopped")
