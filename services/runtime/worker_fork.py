"""A ``serve``'s first worker processes forked from it once the code is loaded (issue 13).

Start-up is mostly loading code: about 0.8 s of CPU per process on the benchmark
machine, and a ``serve`` with worker processes loaded it three times over (the parent
and each ``bonychat serve --services X`` child), all at once on the same cores. With
``BONYCHAT_SERVE_WORKER_START=fork`` (the default where the platform allows it) the
parent loads what its workers run (:data:`.serve.PRELOAD`) once, freezes it out of the
collector's sight (``gc.freeze``: the children's collections do not touch, and so do
not copy, the shared pages) and forks one child per worker before it starts anything
else: no event loop, no thread, no connection exists yet, so a child inherits nothing
but loaded modules. Each child then runs exactly what an exec'd worker runs, the same
command line (``serve --services X --worker-fd … --worker-of … --worker-go …``) through
:func:`services.cli.main.main`, in an environment made as :func:`.worker_process.worker_env`
makes it, and its process title says which worker it is (``setproctitle``).

Only the first start is forked: a worker started again after an exit, or after the
parent withdrew it while waiting for a dependency, is exec'd as before (a process with
an event loop and threads running is no safe place to fork from). Where ``fork`` or
``pidfd_open`` is missing, or another thread already runs, the parent execs them all.

The parent knows a forked child by a :class:`ForkedProcess`: what the supervisor uses of
an ``asyncio.subprocess.Process`` (``pid``, ``returncode``, ``wait``, ``send_signal``,
``kill``), its exit seen through a pidfd on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.runtime.worker_process import Worker, launch, started, worker_command, worker_env
from services.settings import replace_environment

log = logging.getLogger("bonychat.serve")


@dataclass
class Forked:
    """A child forked ahead, as the parent holds it until the supervisor adopts it."""

    pid: int
    report_fd: int  # the parent's end of the pipe the child writes its port on
    go_fd: int  # the parent's end of the pipe that says go (or, closed, withdraw)


def can_fork() -> bool:
    """This platform and this moment allow forking workers (one thread, pidfds)."""
    return (hasattr(os, "fork") and hasattr(os, "pidfd_open")
            and threading.active_count() == 1)


def prefork(groups: Sequence[str], preload: Sequence[str],
            child_main: Callable[[list[str]], int]) -> dict[str, Forked]:
    """Load ``preload``, then fork one held child per group (``--services`` value).

    Returns {group: Forked} (empty when forking is not possible now); a child never
    returns from here: it runs ``child_main`` with its worker command line and exits
    with its status.
    """
    if not can_fork():
        return {}
    for module in preload:
        importlib.import_module(module)
    if not can_fork():  # a module started a thread: forking is no longer safe
        return {}
    gc.collect()
    gc.freeze()  # loaded once and shared: the children's collectors never walk it
    parent = os.getpid()
    forked: dict[str, Forked] = {}
    sys.stdout.flush()  # nothing buffered is written twice (by a child too)
    sys.stderr.flush()
    for services in groups:
        report_read, report_write = os.pipe()
        go_read, go_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            _run_child(services, parent, report_write, go_read,
                       close=[report_read, go_write, *_parent_ends(forked)],
                       child_main=child_main)
        os.close(report_write)
        os.close(go_read)
        forked[services] = Forked(pid, report_read, go_write)
    return forked


def _parent_ends(forked: dict[str, Forked]) -> list[int]:
    return [fd for f in forked.values() for fd in (f.report_fd, f.go_fd)]


def _run_child(services: str, parent: int, report_fd: int, go_fd: int, *,
               close: Sequence[int], child_main: Callable[[list[str]], int]) -> None:
    """The forked child: what ``bonychat serve --services X`` as a worker runs; never
    returns (``os._exit``: nothing of the parent's stack runs on in the child)."""
    code = 1
    try:
        for fd in close:  # the siblings' and the parent's ends: a withdrawal must reach each
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        argv = worker_command(services, report_fd, parent, go_fd)[3:]  # after "-m entry"
        _set_title(["bonychat", *argv])
        replace_environment(worker_env())  # this one with the worker's overrides
        code = child_main(argv)
    except SystemExit as exc:  # as the interpreter reads it: None is 0, text is 1
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("worker %s failed", services)
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _set_title(argv: Sequence[str]) -> None:
    """``ps`` and ``/proc/PID/cmdline`` show the worker's command line (best effort)."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(" ".join(argv))


class ForkedProcess:
    """A forked child, seen as the supervisor sees an ``asyncio.subprocess.Process``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = loop.create_future()
        self._fd = os.pidfd_open(pid)  # readable once the child has exited
        loop.add_reader(self._fd, self._reap)

    def _reap(self) -> None:
        asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)  # -N: killed by signal N
        if not self._exited.done():
            self._exited.set_result(self.returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)  # several waiters; one cancelled

    def send_signal(self, signum: int) -> None:
        if self.returncode is not None:
            raise ProcessLookupError(self.pid)
        os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkedLauncher:
    """The supervisor's launcher: a forked child is adopted once, any later launch execs."""

    def __init__(self, forked: dict[str, Forked]) -> None:
        self.forked = dict(forked)

    async def __call__(self, worker: Worker) -> None:
        held = self.forked.pop(worker.services, None)
        if held is None:
            await launch(worker)
            return
        started(worker, ForkedProcess(held.pid), held.report_fd, held.go_fd)

    def discard(self) -> None:
        """Children never adopted (start-up failed first): withdrawn, then reaped."""
        for held in self.forked.values():
            for fd in (held.go_fd, held.report_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(held.pid, 0)
        self.forked.clear()
