"""The worker half of :mod:`.workers`: a ``serve --services X`` started by a parent ``serve``.

A worker differs from the same command run by hand in three ways only: it ends
when its parent dies, it serves no API (the parent does), and it tells the
parent the port of a small listener on 127.0.0.1 with its ``/metrics`` and
``/healthz`` (written on an inherited pipe, then closed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.runtime.observability import Health, RuntimeMetrics
    from services.runtime.worker_listener import WorkerListener

log = logging.getLogger("bonychat.serve")
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerLink:
    """Given by the parent on the command line (``--worker-fd``, ``--worker-of``)."""

    report_fd: int
    parent: int
    #: launched ahead (``--worker-go``): wait for the parent's go on this pipe first
    go_fd: int | None = None


def end_with_parent(parent: int) -> bool:
    """SIGTERM this process (a clean stop) when ``parent`` dies; False if it already has.

    Linux: the kernel sends it (``prctl(PR_SET_PDEATHSIG)``). Elsewhere a thread
    notices that the parent changed, once a second.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
    except (OSError, AttributeError):
        armed = False
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                         name="bonychat-parent-watch").start()
    return os.getppid() == parent  # it may have died before the signal was armed


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def wait_for_go(fd: int, preload: Sequence[str] = ()) -> bool:
    """Import the modules ``preload``, then block until the parent says go on ``fd``
    (True), or withdraws (False: the pipe closed; a SIGTERM meanwhile ends the process
    at once with status 0: it has opened nothing yet).

    A waiting worker ignores SIGINT as a running one does (the parent stops it).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous = signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        for module in preload:
            importlib.import_module(module)
        go = os.read(fd, 16) != b""
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.close(fd)
    return go


async def start_worker_http(metrics: RuntimeMetrics, health: Health,
                            report_fd: int) -> WorkerListener:
    """``/metrics`` and ``/healthz`` on 127.0.0.1 (any port); the port goes to the parent."""
    from services.runtime.worker_listener import WorkerListener

    health.expect("http")
    runner = WorkerListener(metrics, health)
    port = await runner.start()
    health.set_ready("http")
    try:
        os.write(report_fd, f"{port}\n".encode())
        os.close(report_fd)
    except OSError as exc:  # the parent is gone: its death signal stops this process
        log.warning("cannot report the worker port to the parent: %s", exc)
    log.info("worker listener on 127.0.0.1:%s", port, extra={"port": port, "pid": os.getpid()})
    return runner
