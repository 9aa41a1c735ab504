"""``bonychat serve`` with worker processes: the parent alone probes the dependencies.

The parent reaches its dependencies (database, Kafka) first and starts the
worker processes only then: while Kafka is unreachable only the parent waits
and says so (before, every worker was started at once and each waited, probed
and logged on its own: four processes, four warnings, four waiting ports); a
failure that waiting cannot fix is one line on stderr and exit 1, with no
worker ever started. (The workers' processes are launched first, to load their code
meanwhile, but open nothing before the parent's go, and the parent withdraws them before
it waits: the last tests here.) No infrastructure needed: Kafka is a closed port, the
database a SQLite file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from services.runtime.workers import available_cpus

pytestmark = pytest.mark.skipif(available_cpus() < 2, reason="workers need two CPUs")
BONYCHAT = Path(sys.executable).with_name("bonychat")
T = TypeVar("T")
WAITING = "kafka unreachable at start-up; waiting for it"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(probe: Callable[[], T | None], what: str, seconds: float = 60) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def children(parent: int) -> list[int]:
    """Live child processes of ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def healthz(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as reply:
            return {"code": reply.status, **json.loads(reply.read())}
    except urllib.error.HTTPError as error:
        return {"code": error.code, **json.loads(error.read())}
    except OSError:
        return None


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = Path(tempfile.mkstemp(dir=tmp_path, suffix=".log")[1])
        environ = {k: v for k, v in os.environ.items() if not k.startswith("BONYCHAT_")}
        environ.update({"BONYCHAT_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nobody there
                        "BONYCHAT_DATABASE_URL": str(tmp_path / "serve.db"),
                        "BONYCHAT_SERVE_PROCESSES": "auto", **env})
        with log.open("wb") as stderr:
            process = subprocess.Popen([str(BONYCHAT), "serve"], env=environ,
                                       stdout=subprocess.DEVNULL, stderr=stderr)
        started.append(process)
        return process, log

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def test_only_the_parent_waits_for_an_unreachable_kafka_and_workers_start_after(
        serve: Callable[..., tuple[subprocess.Popen[bytes], Path]]) -> None:
    port = free_port()
    process, log = serve(BONYCHAT_HTTP_PORT=str(port))
    info = wait_for(lambda: healthz(port), "the waiting /healthz")
    assert info["code"] == 503 and info["starting"] is True and "kafka" in info["down"]
    # a few of the parent's retries (backoff 0.2 s, 0.4 s, 0.8 s ...)
    wait_for(lambda: log.read_text().count('"aiokafka"') >= 3 or None, "Kafka retries")
    assert process.poll() is None  # waiting, not exiting
    assert children(process.pid) == []  # no worker started while the parent waits
    text = log.read_text()
    assert text.count(WAITING) == 1, text[-3000:]  # one process waits, once
    assert "worker conversation started" not in text
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_a_failure_waiting_cannot_fix_is_one_line_and_exit_1_without_workers(
        serve: Callable[..., tuple[subprocess.Popen[bytes], Path]], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "serve.db"
    process, log = serve(BONYCHAT_DATABASE_URL=str(missing), BONYCHAT_HTTP_PORT="0")
    assert process.wait(60) == 1
    lines = log.read_text().splitlines()
    errors = [line for line in lines if line.startswith("bonychat: error:")]
    assert errors == [f"bonychat: error: cannot open database: cannot open database "
                      f"'{missing}': folder {missing.parent} does not exist"]
    assert lines[-1] == errors[0]
    assert not [line for line in lines if '"msg": "worker ' in line]  # none started or stopped


# --- a worker launched ahead (issue 13) ---------------------------------------------------

def launched_worker(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, Path, Path]:
    """A ``serve --services conversation,relay`` as a parent launches it: it loads its code,
    then waits on ``--worker-go``. Returns it, the go pipe's writing end, database, log."""
    database, log = tmp_path / "worker.db", tmp_path / "worker.log"
    go_read, go_write = os.pipe()
    report_read, report_write = os.pipe()
    os.close(report_read)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BONYCHAT_")}
    environ.update({"BONYCHAT_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
                    "BONYCHAT_DATABASE_URL": str(database), "BONYCHAT_SERVE_PROCESSES": "1",
                    "BONYCHAT_HTTP_PORT": "0"})
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [str(BONYCHAT), "serve", "--services", "conversation,relay",
             "--worker-fd", str(report_write), "--worker-of", str(os.getpid()),
             "--worker-go", str(go_read)],
            env=environ, stdout=subprocess.DEVNULL, stderr=stderr,
            pass_fds=(go_read, report_write))
    os.close(go_read)
    os.close(report_write)
    return process, go_write, database, log


@pytest.mark.parametrize("how", ["pipe closed", "SIGTERM"])
def test_a_launched_worker_withdrawn_before_go_exits_0_having_opened_nothing(
        tmp_path: Path, how: str) -> None:
    process, go, database, log = launched_worker(tmp_path)
    try:
        time.sleep(1.5)  # loading its code, or waiting already: either way no go yet
        assert process.poll() is None
        if how == "SIGTERM":
            process.send_signal(signal.SIGTERM)
        else:
            os.close(go)
        assert process.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if how == "SIGTERM":
            os.close(go)
        if process.poll() is None:
            process.kill()
            process.wait(30)
    assert not database.exists()  # the database was never opened (nor created)
    assert log.read_text() == ""  # nothing to say: it never started
