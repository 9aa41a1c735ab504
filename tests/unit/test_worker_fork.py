"""services.runtime.worker_fork: a serve's first workers forked once the code is loaded.

The children here run a small ``child_main`` instead of the command line: it reports
what the child was given (its arguments and environment) on a pipe, then waits for
go as a worker does, and exits with a status that says what it read.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from services.runtime import worker_fork
from services.runtime.worker_fork import ForkedLauncher, ForkedProcess, can_fork, prefork
from services.runtime.worker_process import Worker

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open")
WENT, WITHDRAWN = 7, 0


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # prefork froze this test process's heap


def _reporting_main(report: int) -> Callable[[list[str]], int]:
    def child_main(argv: list[str]) -> int:
        keys = ("BONYCHAT_SERVE_PROCESSES", "BONYCHAT_HTTP_PORT", "BONYCHAT_HTTP_HOST",
                "BONYCHAT_FORK_TEST")
        os.write(report, json.dumps({"argv": argv, "env": {k: os.environ.get(k)
                                                             for k in keys}}).encode() + b"\n")
        go_fd = int(argv[argv.index("--worker-go") + 1])
        return WENT if os.read(go_fd, 16) else WITHDRAWN
    return child_main


def _exit_status(pid: int, timeout: float = 10.0) -> int:
    """The child's exit status; fails (rather than hangs) if it has not exited in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found, status = os.waitpid(pid, os.WNOHANG)
        if found:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not exit within {timeout} s")


def _single_threaded() -> None:
    if threading.active_count() != 1:
        pytest.skip("another thread runs in this test process: prefork would not fork")


def test_children_get_the_worker_command_line_and_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _single_threaded()
    monkeypatch.setenv("BONYCHAT_FORK_TEST", "inherited")
    monkeypatch.setenv("BONYCHAT_HTTP_PORT", "8080")  # the parent's API port: not the child's
    report_read, report_write = os.pipe()
    forked = prefork(["conversation,relay", "projections"], (), _reporting_main(report_write))
    os.close(report_write)
    try:
        assert list(forked) == ["conversation,relay", "projections"]
        with os.fdopen(report_read) as lines:
            os.write(forked["projections"].go_fd, b"go\n")  # each waits: release both
            os.write(forked["conversation,relay"].go_fd, b"go\n")
            reports = [json.loads(line) for line in lines]
        for held in forked.values():
            assert _exit_status(held.pid) == WENT
    finally:
        for held in forked.values():
            os.close(held.go_fd)
            os.close(held.report_fd)
    by_services = {r["argv"][r["argv"].index("--services") + 1]: r for r in reports}
    assert set(by_services) == {"conversation,relay", "projections"}
    for services, report in by_services.items():
        argv = report["argv"]
        assert argv[:3] == ["serve", "--services", services]
        assert argv[argv.index("--worker-of") + 1] == str(os.getpid())
        assert report["env"] == {"BONYCHAT_SERVE_PROCESSES": "1", "BONYCHAT_HTTP_PORT": "0",
                                 "BONYCHAT_HTTP_HOST": "127.0.0.1",
                                 "BONYCHAT_FORK_TEST": "inherited"}


def test_closing_one_child_s_pipe_withdraws_it_alone() -> None:
    """Each child closes its siblings' pipe ends: the first child's withdrawal reaches it
    although the second was forked after it (and would otherwise hold its go pipe)."""
    _single_threaded()
    forked = prefork(["conversation", "projections"], (), _reporting_main(os.open(
        os.devnull, os.O_WRONLY)))
    first, second = forked["conversation"], forked["projections"]
    os.close(first.go_fd)  # withdraw
    try:
        assert _exit_status(first.pid, 3) == WITHDRAWN
    finally:
        os.write(second.go_fd, b"go\n")
        os.close(second.go_fd)
        assert _exit_status(second.pid) == WENT
    for held in forked.values():
        os.close(held.report_fd)


def test_no_fork_while_another_thread_runs() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not can_fork()
        assert prefork(["conversation", "projections"], (), lambda argv: 0) == {}
    finally:
        stop.set()
        thread.join()


def _child(code: int | None) -> int:
    """A child that exits with ``code``, or (None) waits to be killed."""
    pid = os.fork()
    if pid == 0:
        if code is None:
            signal.pause()
        os._exit(code or 0)
    return pid


def test_a_forked_process_is_awaited_as_an_asyncio_process() -> None:
    async def scenario() -> None:
        done = ForkedProcess(_child(3))
        first = asyncio.ensure_future(done.wait())
        second = asyncio.ensure_future(done.wait())
        await asyncio.sleep(0)
        first.cancel()  # one waiter gives up: the other still gets the status
        assert await asyncio.wait_for(second, 10) == 3
        assert done.returncode == 3
        with pytest.raises(ProcessLookupError):
            done.send_signal(signal.SIGTERM)
        killed = ForkedProcess(_child(None))
        assert killed.returncode is None
        killed.kill()
        assert await asyncio.wait_for(killed.wait(), 10) == -signal.SIGKILL

    asyncio.run(scenario())


def test_the_launcher_adopts_each_forked_child_once_then_execs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    execs: list[str] = []

    async def launch(worker: Worker) -> None:
        execs.append(worker.services)

    monkeypatch.setattr(worker_fork, "launch", launch)

    async def scenario() -> None:
        report_read, report_write = os.pipe()
        go_read, go_write = os.pipe()
        pid = _child(0)
        launcher = ForkedLauncher({"conversation": worker_fork.Forked(pid, report_read,
                                                                      go_write)})
        worker, other = Worker("conversation"), Worker("projections")
        await launcher(worker)
        await launcher(other)
        assert isinstance(worker.process, ForkedProcess) and worker.process.pid == pid
        assert (worker.go_fd, worker.starts) == (go_write, 1)
        os.close(report_write)  # no port: the reader ends at EOF
        assert worker.reader is not None
        await asyncio.wait_for(worker.reader, 10)
        assert await asyncio.wait_for(worker.process.wait(), 10) == 0
        await launcher(worker)  # a second start of the same worker: exec'd
        assert execs == ["projections", "conversation"]
        os.close(go_read)
        os.close(go_write)

    asyncio.run(scenario())


@pytest.mark.parametrize(("exit_with", "status"), [(None, 0), (4, 4), ("bad setting", 1)])
def test_a_child_s_system_exit_is_its_status(exit_with: int | str | None, status: int) -> None:
    _single_threaded()

    def child_main(argv: list[str]) -> int:
        raise SystemExit(exit_with)

    forked = prefork(["conversation"], (), child_main)
    held = forked["conversation"]
    try:
        assert _exit_status(held.pid) == status
    finally:
        os.close(held.go_fd)
        os.close(held.report_fd)
