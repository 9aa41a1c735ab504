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


@dataclass
class Worker:
    """One child ``bonychat serve --services X`` and what the parent knows of it."""

    services: str
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    process: asyncio.subprocess.Process | None = None
    port: int | None = None  # of its metrics/health listener on 127.0.0.1
    started: float = 0.0
    starts: int = 0
    reader: asyncio.Task[None] | None = None  # waits for the port on the pipe

    @property
    def component(self) -> str:
        return f"worker:{self.services}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


def worker_command(services: str, report_fd: int, parent: int) -> list[str]:
    """The child's command line: this interpreter, the same CLI, ``serve --services``."""
    return [sys.executable, "-m", "services.cli.main", "serve", "--services", services,
            "--worker-fd", str(report_fd), "--worker-of", str(parent)]


def worker_env() -> dict[str, str]:
    """The parent's environment; the child never supervises and never takes the API port."""
    return child_environment(BONYCHAT_SERVE_PROCESSES="1", BONYCHAT_HTTP_HOST="127.0.0.1",
                             BONYCHAT_HTTP_PORT="0")


async def spawn(worker: Worker) -> None:
    """Start ``worker``'s process; its port arrives later on a pipe (:func:`read_port`)."""
    read, write = os.pipe()
    try:
        worker.process = await asyncio.create_subprocess_exec(
            *worker_command(worker.services, write, os.getpid()), env=worker_env(),
            pass_fds=(write,), stdin=asyncio.subprocess.DEVNULL)
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    worker.port = None
    worker.started = time.monotonic()
    worker.starts += 1
    worker.reader = asyncio.get_running_loop().create_task(read_port(worker, read))


async def read_port(worker: Worker, fd: int) -> None:
    """The child writes its listener's port once it is up (EOF if it exits first)."""
    try:
        data = await asyncio.to_thread(os.read, fd, 64)
    finally:
        os.close(fd)
    if data.strip().isdigit():
        worker.port = int(data.strip())
