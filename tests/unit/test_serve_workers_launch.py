"""Worker processes launched ahead (issue 13): each loads its code while the parent
reaches the dependencies, and starts only on the parent's go.

A launched worker holds the reading end of a pipe (``--worker-go``): one line on it
is go, the pipe closed is "not needed": it exits with status 0, nothing opened. The
fake processes here do what :func:`services.runtime.worker_side.wait_for_go` does
with the real pipe.
"""

from __future__ import annotations

import asyncio
import os
import signal

from services.runtime.observability import Health
from services.runtime.workers import RestartPolicy, Supervisor, Worker
from tests.unit.test_serve_workers import FakeProcess, Starter, run


class Launcher:
    """Launches fake held processes: each reads its go pipe; EOF exits it with 0."""

    def __init__(self) -> None:
        self.launched: list[FakeProcess] = []
        self.heard: dict[int, bytes] = {}  # pid -> what it read on its pipe
        self.readers: list[asyncio.Task[None]] = []

    async def __call__(self, worker: Worker) -> None:
        read, write = os.pipe()
        process = FakeProcess(500 + len(self.launched))
        self.launched.append(process)
        worker.process = process  # type: ignore[assignment]
        worker.go_fd = write
        self.readers.append(asyncio.create_task(self.wait_for_go(process, read)))

    async def wait_for_go(self, process: FakeProcess, fd: int) -> None:
        try:
            self.heard[process.pid] = await asyncio.to_thread(os.read, fd, 16)
        finally:
            os.close(fd)
        if not self.heard[process.pid]:
            process.finish(0)  # withdrawn before it started anything


def supervisor(groups: list[str], health: Health | None = None
               ) -> tuple[Supervisor, Starter, Launcher]:
    starter, launcher = Starter([]), Launcher()
    sup = Supervisor(groups, health or Health(), probe_seconds=3600, starter=starter,
                     launcher=launcher, clock=lambda: 0.0)
    for worker in sup.workers:
        worker.policy = RestartPolicy()
    return sup, starter, launcher


@run
async def test_launched_workers_start_on_go_without_a_second_process() -> None:
    sup, starter, launcher = supervisor(["conversation,relay", "projections"])
    await sup.launch_all()
    assert [w.running for w in sup.workers] == [True, True]
    assert launcher.heard == {}  # waiting: nothing said yet
    await sup.start_all()
    await asyncio.gather(*launcher.readers)
    assert launcher.heard == {500: b"go\n", 501: b"go\n"}
    assert starter.started == []  # the launched processes are the workers
    assert all(w.go_fd is None for w in sup.workers)
    await sup.stop_all()  # running workers now: SIGTERM as before
    assert [p.signals for p in launcher.launched] == [[signal.SIGTERM]] * 2


@run
async def test_withdrawn_workers_exit_0_unsignalled_and_start_afresh_later() -> None:
    sup, starter, launcher = supervisor(["conversation,relay", "projections"])
    await sup.launch_all()
    await asyncio.wait_for(sup.withdraw_all(), 5)  # the parent must wait for a dependency
    assert launcher.heard == {500: b"", 501: b""}  # the pipe closed: no go
    assert [p.returncode for p in launcher.launched] == [0, 0]
    assert [p.signals for p in launcher.launched] == [[], []]
    assert not any(w.running for w in sup.workers)
    await sup.start_all()  # the dependency came up: new processes, started directly
    assert [w.process for w in sup.workers] == starter.started and len(starter.started) == 2
    await sup.stop_all()


@run
async def test_stopping_while_held_closes_the_pipes_instead_of_signalling() -> None:
    """A held worker may still be loading its code (no SIGTERM handler yet): a SIGTERM
    would end it with -15 and a warning; the closed pipe ends it with 0."""
    sup, _, launcher = supervisor(["conversation,relay", "projections"])
    await sup.launch_all()
    await asyncio.wait_for(sup.stop_all(), 5)
    assert [(p.returncode, p.signals) for p in launcher.launched] == [(0, []), (0, [])]


@run
async def test_a_worker_that_died_while_held_is_started_afresh() -> None:
    health = Health()
    sup, starter, launcher = supervisor(["conversation,relay", "projections"], health)
    await sup.launch_all()
    launcher.launched[0].finish(1)  # e.g. it failed while loading its code
    await sup.start_all()
    assert sup.workers[0].process is starter.started[0]  # a new process for it
    assert sup.workers[1].process is launcher.launched[1]  # the other one was told go
    await asyncio.gather(*launcher.readers[1:])
    assert launcher.heard[501] == b"go\n"
    await sup.stop_all()
    await asyncio.gather(*launcher.readers)  # the dead one's pipe was closed as well
    assert launcher.heard[500] == b""
