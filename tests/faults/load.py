"""The load of a fault run: gateway events through ``kcat`` and through ``POST /v1/events``.

Both publishers keep going through every fault: ``kcat`` (librdkafka, idempotent,
never giving up on a record) is fed at a steady rate; the HTTP poster sends
batches in order and repeats a batch until it gets 202 (a gateway's retry), so
every event reaches the system at least once, in per-contact order. Everything
each publisher handed over is recorded: that is the input of the reference.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.integration.kafka_fixtures import generate_stream

CHUNK = 20_000
HTTP_CHUNK = 5_000
HTTP_WORKSPACES = 40
CANARY_WS = "canary"
HTTP_CANARY_WS = "hcanary"


def http_tokens() -> str:
    """``BONYCHAT_GATEWAY_TOKENS``: one token per HTTP workspace (a token binds one)."""
    names = [f"h{k}" for k in range(HTTP_WORKSPACES)] + [HTTP_CANARY_WS]
    return ",".join(f"{ws}=tok-{ws}" for ws in names)


def kcat_records(seed: int) -> Iterator[tuple[bytes | None, bytes]]:
    """Endless gateway records in chunks of fresh workspaces (unique event ids per chunk)."""
    for chunk in itertools.count():
        stream = generate_stream(CHUNK, seed=seed + chunk, contacts=400,
                                 workspaces=(f"w{chunk}a", f"w{chunk}b"))
        yield from stream.records


def http_batches(seed: int, size: int) -> Iterator[tuple[str, list[bytes]]]:
    """``(workspace, lines)`` batches; invalid lines naming other workspaces are left out."""
    for chunk in range(HTTP_WORKSPACES):
        ws = f"h{chunk}"
        stream = generate_stream(HTTP_CHUNK, seed=seed + 500 + chunk, contacts=200,
                                 workspaces=(ws,))
        lines = [value for key, value in stream.records if key is not None]
        for start in range(0, len(lines), size):
            yield ws, lines[start:start + size]


def canary(ws: str, n: int) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"event_id": f"{ws}-{n}", "type": "message.received", "workspace_id": ws,
                       "contact_id": f"k{n}", "occurred_at": now,
                       "channel": {"type": "webchat", "id": "faults"},
                       "data": {"message_id": f"m{n}", "text": "canary"}}).encode()


class SentLog:
    """Every line a publisher handed over, appended to a file (not kept in memory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._lock = threading.Lock()
        self._file = open(path, "ab")  # noqa: SIM115 - closed by close()

    def add(self, lines: Iterable[bytes]) -> None:
        with self._lock:
            for line in lines:
                self._file.write(line + b"\n")
                self.count += 1

    def close(self) -> None:
        with self._lock:
            self._file.close()


@dataclass
class KcatPublisher:
    """Feeds ``kcat -P`` at ``rate`` records/s; ``sent`` is every line handed to it."""

    bootstrap: str
    topic: str
    rate: int
    seed: int
    sent: SentLog
    _stop: threading.Event = field(default_factory=threading.Event)
    _extra: list[tuple[bytes, bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _proc: subprocess.Popen[bytes] | None = None
    _thread: threading.Thread | None = None
    stderr_path: Path | None = None

    def start(self) -> None:
        # -E: keep going on non-fatal errors (by default kcat exits when every
        # broker is down); librdkafka then retries each record until delivered.
        assert self.stderr_path is not None
        with open(self.stderr_path, "ab") as err:
            self._proc = subprocess.Popen(
                ["kcat", "-P", "-E", "-b", self.bootstrap, "-t", self.topic, "-K", "\t",
                 "-X", "enable.idempotence=true", "-X", "message.timeout.ms=0",
                 "-X", "linger.ms=5", "-X", "partitioner=murmur2_random",
                 "-X", "queue.buffering.max.messages=2000000"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        self._thread = threading.Thread(target=self._feed, name="kcat-feed", daemon=True)
        self._thread.start()

    def inject(self, key: bytes, value: bytes) -> None:
        """Publish one extra record (a canary) as soon as possible."""
        with self._lock:
            self._extra.append((key, value))

    def _feed(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        out = self._proc.stdin
        records = kcat_records(self.seed)
        tick = 0.02
        per_tick = max(1, round(self.rate * tick))
        next_at = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                extra, self._extra = self._extra, []
            lines = [*extra, *itertools.islice(records, per_tick)]
            out.write(b"".join((key or b"") + b"\t" + value + b"\n" if key is not None
                               else value + b"\n" for key, value in lines))
            out.flush()
            self.sent.add(value for _, value in lines)
            next_at += tick
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()  # behind: do not burst to catch up

    def stop(self, timeout: float = 300) -> int:
        """Stop feeding, let kcat deliver everything (it retries forever), return its status."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        assert self._proc is not None and self._proc.stdin is not None
        with self._lock:
            extra, self._extra = self._extra, []
        for key, value in extra:
            self._proc.stdin.write(key + b"\t" + value + b"\n")
            self.sent.add([value])
        self._proc.stdin.close()
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        return code

    def errors(self) -> str:
        """The end of kcat's stderr (broker-down warnings are expected there)."""
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")[-2000:]


@dataclass
class HttpStats:
    requests: int = 0
    accepted_batches: int = 0
    refused_503: int = 0
    refused_503_max_seconds: float = 0.0
    errors: int = 0  # connection refused / reset (the HTTP process was down)
    other: dict[int, int] = field(default_factory=dict)


def post(port: int, ws: str, lines: list[bytes], timeout: float = 30
         ) -> tuple[int | None, float]:
    """POST the lines as one JSON array; (status or None on a connection error, seconds)."""
    body = b"[" + b",".join(lines) + b"]"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/events", data=body, method="POST",
        headers={"Authorization": f"Bearer tok-{ws}", "Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - started
    except OSError:
        return None, time.monotonic() - started


@dataclass
class HttpPublisher:
    """Posts batches in order at about ``rate`` events/s, repeating each until 202."""

    port: int
    rate: int
    seed: int
    sent: SentLog
    batch: int = 20
    stats: HttpStats = field(default_factory=HttpStats)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="http-load", daemon=True)
        self._thread.start()

    def deliver(self, ws: str, lines: list[bytes], give_up: float = 600) -> float:
        """Post until accepted; returns when (monotonic) it was accepted."""
        deadline = time.monotonic() + give_up
        while time.monotonic() < deadline:
            status, seconds = post(self.port, ws, lines)
            self.stats.requests += 1
            if status == 202:
                self.stats.accepted_batches += 1
                self.sent.add(lines)
                return time.monotonic()
            if status == 503:
                self.stats.refused_503 += 1
                self.stats.refused_503_max_seconds = max(self.stats.refused_503_max_seconds,
                                                         seconds)
            elif status is None:
                self.stats.errors += 1
            else:
                self.stats.other[status] = self.stats.other.get(status, 0) + 1
            time.sleep(0.2)
        raise AssertionError(f"POST /v1/events not accepted within {give_up}s")

    def _run(self) -> None:
        interval = self.batch / max(1, self.rate)
        next_at = time.monotonic()
        for ws, lines in http_batches(self.seed, self.batch):
            if self._stop.is_set():
                return
            self.deliver(ws, lines)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(120)
