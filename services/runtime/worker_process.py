"""One worker process of a ``serve``: its command line, environment, start and port, and
when to start it again after it exited (:class:`RestartPolicy`).

:class:`.workers.Supervisor` runs them; :mod:`.worker_side` is the child's half.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol

from services.settings import child_environment

#: a child that ran this long before exiting starts the backoff from the beginning
HEALTHY_SECONDS = 60.0
#: exits in a row, each sooner than HEALTHY_SECONDS after its start, before serve gives up
QUICK_FAILURES = 5
FIRST_DELAY, MAX_DELAY = 1.0, 30.0


@dataclass
class RestartPolicy:
    """When to start an exited worker again: exponential backoff, then give up."""

    first_delay: float = FIRST_DELAY
    max_delay: float = MAX_DELAY
    healthy_seconds: float = HEALTHY_SECONDS
    quick_failures: int = QUICK_FAILURES
    failures: int = 0  # exits in a row, each soon after its start

    def after_exit(self, ran_seconds: float) -> float | None:
        """Seconds to wait before the next start, or None: stop trying."""
        if ran_seconds >= self.healthy_seconds:
            self.failures = 0
        self.failures += 1
        if self.failures > self.quick_failures:
            return None
        return float(min(self.max_delay, self.first_delay * 2.0 ** (self.failures - 1)))


class ChildProcess(Protocol):
    """What the supervisor uses of a worker's process: an exec'd one
    (``asyncio.subprocess.Process``) or a forked one (:class:`.worker_fork.ForkedProcess`)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, signal: int) -> None: ...

    def kill(self) -> None: ...


@dataclass
class Worker:
    """One child ``bonychat serve --services X`` and what the parent knows of it."""

    services: str
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    process: ChildProcess | None = None
    port: int | None = None  # of its metrics/health listener on 127.0.0.1
    #: a process started ahead (:func:`spawn` ``hold=True``) waits until this pipe says go
    go_fd: int | None = None
    started: float = 0.0
    starts: int = 0
    reader: asyncio.Task[None] | None = None  # waits for the port on the pipe

    @property
    def component(self) -> str:
        return f"worker:{self.services}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


def worker_command(services: str, report_fd: int, parent: int,
                   go_fd: int | None = None) -> list[str]:
    """The child's command line: this interpreter, the same CLI, ``serve --services``
    (``go_fd``: it waits for the parent's go on that pipe before it starts anything)."""
    return [sys.executable, "-m", "services.cli.entry", "serve", "--services", services,
            "--worker-fd", str(report_fd), "--worker-of", str(parent),
            *(["--worker-go", str(go_fd)] if go_fd is not None else [])]


def worker_env() -> dict[str, str]:
    """The parent's environment; the child never supervises and never takes the API port."""
    return child_environment(BONYCHAT_SERVE_PROCESSES="1", BONYCHAT_HTTP_HOST="127.0.0.1",
                             BONYCHAT_HTTP_PORT="0")


async def spawn(worker: Worker, hold: bool = False) -> None:
    """Start ``worker``'s process; its port arrives later on a pipe (:func:`read_port`).

    ``hold``: the process loads its code, then waits for :func:`release` (or exits 0
    when :func:`withdraw` closes the pipe, or on SIGTERM) before it opens anything.
    """
    read, write = os.pipe()
    go_read, go_write = os.pipe() if hold else (None, None)
    try:
        worker.process = await asyncio.create_subprocess_exec(
            *worker_command(worker.services, write, os.getpid(), go_read), env=worker_env(),
            pass_fds=(write,) if go_read is None else (write, go_read),
            stdin=asyncio.subprocess.DEVNULL)
    except BaseException:
        os.close(read)
        if go_write is not None:
            os.close(go_write)
        raise
    finally:
        os.close(write)
        if go_read is not None:
            os.close(go_read)
    started(worker, worker.process, read, go_write)


def started(worker: Worker, process: ChildProcess, report_fd: int, go_fd: int | None) -> None:
    """``worker`` now runs as ``process`` (exec'd or forked): its port will arrive on
    ``report_fd``; ``go_fd``: the pipe that releases it, if it is held."""
    worker.process = process
    worker.go_fd = go_fd
    worker.port = None
    worker.started = time.monotonic()
    worker.starts += 1
    worker.reader = asyncio.get_running_loop().create_task(read_port(worker, report_fd))


async def read_port(worker: Worker, fd: int) -> None:
    """The child writes its listener's port once it is up (EOF if it exits first)."""
    try:
        data = await asyncio.to_thread(os.read, fd, 64)
    finally:
        os.close(fd)
    if data.strip().isdigit():
        worker.port = int(data.strip())


async def launch(worker: Worker) -> None:
    """:func:`spawn` with ``hold``: the process waits for :func:`release`."""
    await spawn(worker, hold=True)


def release(worker: Worker) -> None:
    """Tell a held worker (:func:`spawn` ``hold=True``) to start; nothing if it is not held."""
    fd, worker.go_fd = worker.go_fd, None
    if fd is not None:
        try:
            os.write(fd, b"go\n")
        except OSError:
            pass  # it has exited already: the supervisor sees its exit status
        finally:
            os.close(fd)


def withdraw(worker: Worker) -> None:
    """A held worker is not needed (yet): closing its pipe makes it exit with status 0."""
    fd, worker.go_fd = worker.go_fd, None
    if fd is not None:
        os.close(fd)
