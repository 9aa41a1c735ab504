"""What PostgreSQL does during a latency phase, second by second (``bench.latency``).

A thread samples, every ``interval`` seconds, in one query: the tables autovacuum
(or a manual VACUUM / ANALYZE) is working on (``pg_stat_progress_vacuum`` /
``_analyze``), the client backends of the measurement's schema waiting for a
heavyweight lock (``wait_event_type = 'Lock'``), what the checkpointer waits on,
and the buffers checkpoints have written so far (``pg_stat_bgwriter``). After the
phase, the server's log (``BONYCHAT_INFRA_STATE``/pg/postgres.log, when this
process can read it) adds what sampling cannot see: an autovacuum cancelled
because a backend waited for its lock ``deadlock_timeout`` (1 s), a vacuum or
analyze skipped because a lock was taken, and checkpoints.

It was written to explain the ~1 s p99 at 1,000 events/s right after the 1M-event
backlog (docs/runtime.md, "Latency right after a backlog").
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
#: checkpoints so far and buffers they wrote: pg_stat_checkpointer from PostgreSQL 17 on
CHECKPOINTS = {
    True: "(SELECT num_timed + num_requested FROM pg_stat_checkpointer), "
          "(SELECT buffers_written FROM pg_stat_checkpointer)",
    False: "(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter), "
           "(SELECT buffers_checkpoint FROM pg_stat_bgwriter)"}
SAMPLE = (
    "SELECT (SELECT coalesce(json_agg(p.relid::regclass::text), '[]') "
    "        FROM pg_stat_progress_vacuum p), "
    "       (SELECT coalesce(json_agg(a.relid::regclass::text), '[]') "
    "        FROM pg_stat_progress_analyze a), "
    "       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
    "        AND wait_event_type = 'Lock' AND strpos(query, %s) > 0), "
    "       (SELECT wait_event FROM pg_stat_activity WHERE backend_type = 'checkpointer'), "
    "       {checkpoints}, "
    "       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'), "
    "       (SELECT wal_bytes FROM pg_stat_wal), (SELECT wal_fpi FROM pg_stat_wal)"
)
#: the checkpointer's wait events while it has no checkpoint to do
IDLE_CHECKPOINTER = (None, "CheckpointerMain")


@dataclass(frozen=True)
class Sample:
    """One look at the server (``SAMPLE``)."""

    at: float  # epoch seconds
    vacuum: list[str]  # relations under VACUUM (autovacuum's or not)
    analyze: list[str]
    lock_waits: int  # the schema's backends waiting for a heavyweight lock
    checkpointer: str | None  # its wait event: "CheckpointWriteDelay" while spreading writes
    checkpoint_buffers: int  # written by checkpoints so far (counted when one completes)
    checkpoints: int = 0  # checkpoints started so far (timed + requested)
    autovacuum_workers: int = 0  # server-wide: every schema's
    wal_bytes: int = 0  # pg_stat_wal so far (each backend reports at most once a second)
    wal_fpi: int = 0  # full-page images so far: the first change of a page after a checkpoint


def sample_query(server_version: int) -> str:
    return SAMPLE.format(checkpoints=CHECKPOINTS[server_version >= 170000])


def take_sample(conn: psycopg.Connection[Any], schema: str) -> Sample | None:
    row = conn.execute(sample_query(conn.info.server_version).encode(),
                       (f'"{schema}"',)).fetchone()
    if row is None:
        return None
    return Sample(time.time(), row[0], row[1], int(row[2]), row[3], int(row[5] or 0),
                  int(row[4] or 0), int(row[6] or 0), int(row[7] or 0), int(row[8] or 0))


#: log lines worth reporting (with the CONTEXT line that names a cancelled vacuum's table)
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC \[\d+\] (\w+):\s+(.*)$")
LOG_WORTH = ("canceling autovacuum task", "skipping vacuum", "skipping analyze",
             "automatic vacuum of table", "automatic analyze of table", "checkpoint starting",
             "checkpoint complete", "checkpoints are occurring too frequently")


def server_log() -> Path:
    state = Path(os.environ.get("BONYCHAT_INFRA_STATE") or ROOT / "infra" / ".state")
    return state / "pg" / "postgres.log"


def _delta(first: Sample | None, last: Sample | None, counter: str) -> int:
    if first is None or last is None:
        return 0
    return int(getattr(last, counter)) - int(getattr(first, counter))


class DatabaseWatch:
    """Samples PostgreSQL in a thread between ``__enter__`` and ``__exit__``."""

    def __init__(self, database_url: str, schema: str, interval: float = 0.2) -> None:
        self.database_url, self.schema, self.interval = database_url, schema, interval
        self.samples: list[Sample] = []
        self.started = self.ended = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: str | None = None

    def __enter__(self) -> DatabaseWatch:
        self.started = time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.ended = time.time()

    def _run(self) -> None:
        try:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                while not self._stop.is_set():
                    found = take_sample(conn, self.schema)
                    if found is not None:
                        self.samples.append(found)
                    self._stop.wait(self.interval)
        except psycopg.Error as exc:  # the measurement goes on without it; say so
            self.error = f"{type(exc).__name__}: {exc}"

    def _table(self, relation: str) -> str:
        prefix = f"{self.schema}."
        return relation[len(prefix):] if relation.startswith(prefix) else f"({relation})"

    def by_second(self, start: float, seconds: int) -> list[dict[str, Any]]:
        """Per second from ``start`` (epoch seconds): tables vacuumed / analysed, most of
        the schema's backends waiting for a lock at once, autovacuum workers (server-wide),
        whether a checkpoint was under way and whether one started, buffers written by
        checkpoints (counted when one completes), WAL written (kB) and full-page images
        (the server's: every schema's, reported by each backend at most once a second)."""
        out: list[dict[str, Any]] = []
        before = [s for s in self.samples if s.at < start]
        last: Sample | None = before[-1] if before else None
        for second in range(seconds):
            inside = [s for s in self.samples if start + second <= s.at < start + second + 1]
            end = inside[-1] if inside else None
            started = last is not None and any(
                s.checkpoints > last.checkpoints
                or (s.checkpointer not in IDLE_CHECKPOINTER
                    and p.checkpointer in IDLE_CHECKPOINTER)
                for p, s in zip([last, *inside], inside, strict=False))

            out.append({
                "vacuum": sorted({self._table(r) for s in inside for r in s.vacuum}),
                "analyze": sorted({self._table(r) for s in inside for r in s.analyze}),
                "lock_waits": max((s.lock_waits for s in inside), default=0),
                "autovacuum_workers": max((s.autovacuum_workers for s in inside), default=0),
                "checkpoint": any(s.checkpointer not in IDLE_CHECKPOINTER for s in inside),
                "checkpoint_started": started,
                "checkpoint_buffers": _delta(last, end, "checkpoint_buffers"),
                "wal_kb": _delta(last, end, "wal_bytes") // 1024,
                "wal_fpi": _delta(last, end, "wal_fpi")})
            if end is not None:
                last = end
        return out

    def log(self, margin: float = 2.0) -> list[str]:
        """The server log's lines about autovacuum and checkpoints between enter and exit
        (± ``margin`` s), other schemas' tables left out; [] if the log cannot be read."""
        path = server_log()
        try:
            with path.open("rb") as handle:
                handle.seek(max(0, path.stat().st_size - (4 << 20)))
                text = handle.read().decode(errors="replace")
        except OSError:
            return []
        found: list[str] = []
        lines = text.splitlines()
        for n, line in enumerate(lines):
            match = LOG_LINE.match(line)
            if not match or not any(w in match.group(3) for w in LOG_WORTH):
                continue
            at = datetime.strptime(match.group(1)[:23], "%Y-%m-%d %H:%M:%S.%f").replace(
                tzinfo=UTC).timestamp() if "." in match.group(1) else datetime.strptime(
                match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
            if not self.started - margin <= at <= self.ended + margin:
                continue
            message = match.group(3)
            if "canceling autovacuum" in message and n + 1 < len(lines):
                message += " (" + lines[n + 1].split("CONTEXT:", 1)[-1].strip() + ")"
            tables = re.findall(r'"(?:[^".]+\.)?([^".]+)\.([^".]+)"', message)
            if tables and not any(schema == self.schema for schema, _ in tables):
                continue
            found.append(f"{time.strftime('%H:%M:%S', time.gmtime(at))}"
                         f"{match.group(1)[19:23]} +{at - self.started:.1f}s "
                         + re.sub(r'"(?:[^".]+\.)?' + re.escape(self.schema) + r"\.", '"',
                                  message))
        return found
