"""A private Kafka + PostgreSQL for fault injection (never the shared ones).

Each run gets its own state directory and free ports (``infra/up.sh`` with
``BONYCHAT_INFRA_STATE``/``*_PORT`` overrides), so stopping, killing, freezing
or restarting them touches nobody else's tests. Torn down (data deleted) at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class PrivateInfra:
    """Kafka and PostgreSQL of one fault run, with the faults that can befall them."""

    state: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bonychat-faults-")))
    kafka_port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    pg_port: int = field(default_factory=free_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        return f"postgresql://bonychat@127.0.0.1:{self.pg_port}/bonychat"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "BONYCHAT_INFRA_STATE": str(self.state),
            "BONYCHAT_INFRA_ENV_FILE": str(self.state / "local.env"),
            "BONYCHAT_KAFKA_PORT": str(self.kafka_port),
            "BONYCHAT_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "BONYCHAT_PG_PORT": str(self.pg_port),
            "BONYCHAT_KAFKA_HEAP_OPTS": os.environ.get("BONYCHAT_KAFKA_HEAP_OPTS",
                                                       "-Xms128m -Xmx384m"),
        })
        return env

    def _script(self, *args: str) -> None:
        subprocess.run(["bash", *args], cwd=ROOT, env=self.env(), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up(self) -> None:
        self._script(str(INFRA / "up.sh"))

    def down(self) -> None:
        try:
            self._script(str(INFRA / "down.sh"), "--purge")
        except subprocess.CalledProcessError as exc:  # best effort
            print(f"private infra teardown failed: {exc.stderr!r}")

    # --- Kafka -----------------------------------------------------------------------

    def kafka_pid(self) -> int | None:
        path = self.state / "kafka" / "kafka.pid"
        try:
            pid = int(path.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def kafka_stop(self) -> None:
        """Clean stop (SIGTERM: controlled shutdown), waits until it is gone."""
        self._script(str(INFRA / "kafka" / "stop.sh"))

    def kafka_kill9(self) -> None:
        pid = self.kafka_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)

    def kafka_start(self) -> None:
        self._script(str(INFRA / "kafka" / "start.sh"))

    # --- PostgreSQL --------------------------------------------------------------------

    def pg_ctl(self, *args: str) -> None:
        self._script(str(INFRA / "postgres" / "ctl.sh"), *args)

    def pg_restart_immediate(self) -> None:
        """``pg_ctl restart -m immediate``: every session is cut, crash recovery runs."""
        self.pg_ctl("restart", "-m", "immediate")

    def pg_stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast")

    def pg_start(self) -> None:
        self.pg_ctl("start")

    def pg_pids(self) -> list[int]:
        """The postmaster and every process it started (backends, walwriter...)."""
        data = self.state / "pg" / "data" / "postmaster.pid"
        if not data.exists():
            data = Path(os.path.realpath(self.state / "pg")) / "data" / "postmaster.pid"
        try:
            master = int(data.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == master]
        return [master, *children]

    def pg_freeze(self) -> list[int]:
        """SIGSTOP PostgreSQL: it stays "up" but answers nothing (unreachable, not refused)."""
        pids = self.pg_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    @staticmethod
    def pg_thaw(pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[1])


def _wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
