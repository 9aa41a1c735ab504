"""The services of one fault run, each a ``bonychat serve`` process under a supervisor.

Roles: ingest, two conversation copies, relay, projections and an HTTP-only
process (``--services http``). The supervisor thread restarts any process that
exits (as systemd or Kubernetes would after a ``kill -9``), so the services
recover without a manual step; it counts every restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BONYCHAT = Path(sys.executable).parent / "bonychat"
ROOT = Path(__file__).resolve().parents[2]
ROLES = {"ingest": "ingest", "conversation-a": "conversation", "conversation-b": "conversation",
         "relay": "relay", "projections": "projections", "http": "http"}
GATEWAY_TOKEN = "faults-gw"
WORKSPACE_HTTP = "ws_http"
RESTART_DELAY = 0.2  # a supervisor's restart delay
#: the layout under test may be chosen from the caller's environment (e.g.
#: BONYCHAT_CONVERSATION_INPUT=gateway make test-faults); every other setting is the plan's
PASSED_THROUGH = frozenset({"BONYCHAT_CONVERSATION_INPUT"})


@dataclass
class Member:
    role: str
    services: str
    port: int
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0


@dataclass
class Cluster:
    env: dict[str, str]
    logs: Path
    ports: dict[str, int]
    members: dict[str, Member] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for role, services in ROLES.items():
            member = Member(role, services, self.ports[role], self.logs / f"{role}.log")
            self.members[role] = member
            self._spawn(member)
        self._thread = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._thread.start()

    def _spawn(self, member: Member) -> None:
        env = dict(self.env, BONYCHAT_HTTP_PORT=str(member.port))
        with open(member.log_path, "ab") as log:
            member.popen = subprocess.Popen(
                [str(BONYCHAT), "serve", "--services", member.services], env=env,
                stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
        member.started_at = time.monotonic()

    def _supervise(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                for member in self.members.values():
                    if member.popen is not None and member.popen.poll() is not None:
                        time.sleep(RESTART_DELAY)
                        member.restarts += 1
                        self._spawn(member)
            self._stop.wait(0.05)

    def kill9(self, role: str) -> float:
        """SIGKILL the role's process; returns when it died (the supervisor restarts it)."""
        with self._lock:
            member = self.members[role]
            assert member.popen is not None
            member.popen.send_signal(signal.SIGKILL)
            member.popen.wait(10)
            return time.monotonic()

    def pid(self, role: str) -> int | None:
        popen = self.members[role].popen
        return popen.pid if popen is not None and popen.poll() is None else None

    def health(self, role: str) -> dict[str, object] | None:
        url = f"http://127.0.0.1:{self.members[role].port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                data: dict[str, object] = json.loads(response.read())
                return data
        except urllib.error.HTTPError as exc:
            body: dict[str, object] = json.loads(exc.read() or b"{}")
            return body
        except (OSError, ValueError):
            return None

    def ready(self, role: str) -> bool:
        info = self.health(role)
        return bool(info and info.get("ready"))

    def all_ready(self) -> bool:
        return all(self.ready(role) for role in self.members)

    def wait_ready(self, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.all_ready():
                return time.monotonic()
            time.sleep(0.1)
        raise AssertionError("services not ready: " + json.dumps(
            {role: self.health(role) for role in self.members}, default=str))

    def log_text(self, role: str) -> str:
        return self.members[role].log_path.read_text(errors="replace")

    def stop(self) -> dict[str, int]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        codes = {}
        for role, member in self.members.items():
            popen = member.popen
            if popen is None:
                continue
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
                try:
                    popen.wait(30)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait(5)
            codes[role] = popen.returncode
        return codes


def service_env(bootstrap: str, database_url: str, suffix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BONYCHAT_") or k in PASSED_THROUGH}
    env.update({
        "BONYCHAT_KAFKA_BOOTSTRAP": bootstrap, "BONYCHAT_DATABASE_URL": database_url,
        "BONYCHAT_TOPIC_SUFFIX": suffix, "BONYCHAT_CONSUMER_GROUP_PREFIX": f"faults-{suffix}",
        "BONYCHAT_RELAY_WITH_CONVERSATION": "0",
        "BONYCHAT_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "BONYCHAT_GATEWAY_TOKENS": f"{WORKSPACE_HTTP}={GATEWAY_TOKEN}",
        "BONYCHAT_ANALYTICS_TOKENS": f"{WORKSPACE_HTTP}=faults-an",
        "BONYCHAT_HTTP_PRODUCE_TIMEOUT_SECONDS": "5",
    })
    return env
