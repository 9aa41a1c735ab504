"""``bonychat serve`` with worker processes: the parent alone probes the dependencies.

The parent reaches its dependencies (database, Kafka) first and starts the
worker processes only then: while Kafka is unreachable only the parent waits
and says so (before, every worker was started at once and each waited, probed
and logged on its own: four processes, four warnings, four waiting ports); a
failure that waiting cannot fix is one line on stderr and exit 1, with no
worker ever started. No infrastructure needed: Kafka is a closed port, the
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
