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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = (
    "SELECT (SELECT coalesce(json_agg(p.relid::regclass::text), '[]') "
    "        FROM pg_stat_progress_vacuum p), "
    "       (SELECT coalesce(json_agg(a.relid::regclass::text), '[]') "
    "        FROM pg_stat_progress_analyze a), "
    "       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
    "        AND wait_event_type = 'Lock' AND strpos(query, %s) > 0), "
    "       (SELECT wait_event FROM pg_stat_activity WHERE backend_type = 'checkpointer'), "
    "       (SELECT buffers_checkpoint FROM pg_stat_bgwriter)"
)
#: log lines worth reporting (with the CONTEXT line that names a cancelled vacuum's table)
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC \[\d+\] (\w+):\s+(.*)$")
LOG_WORTH = ("canceling autovacuum task", "skipping vacuum", "skipping analyze",
             "automatic vacuum of table", "automatic analyze of table", "checkpoint starting",
             "checkpoint complete", "checkpoints are occurring too frequently")


def server_log() -> Path:
    state = Path(os.environ.get("BONYCHAT_INFRA_STATE") or ROOT / "infra" / ".state")
    return state / "pg" / "postgres.log"


class DatabaseWatch:
    """Samples PostgreSQL in a thread between ``__enter__`` and ``__exit__``."""

    def __init__(self, database_url: str, schema: str, interval: float = 0.2) -> None:
        self.database_url, self.schema, self.interval = database_url, schema, interval
        self.samples: list[tuple[float, list[str], list[str], int, str | None, int]] = []
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
                    row = conn.execute(SAMPLE, (f'"{self.schema}"',)).fetchone()
                    if row is not None:
                        self.samples.append((time.time(), row[0], row[1], int(row[2]), row[3],
                                             int(row[4] or 0)))
                    self._stop.wait(self.interval)
        except psycopg.Error as exc:  # the measurement goes on without it; say so
            self.error = f"{type(exc).__name__}: {exc}"

    def _table(self, relation: str) -> str:
        prefix = f"{self.schema}."
        return relation[len(prefix):] if relation.startswith(prefix) else f"({relation})"

    def by_second(self, start: float, seconds: int) -> list[dict[str, Any]]:
        """Per second from ``start`` (epoch seconds): tables vacuumed / analysed, most of
        the schema's backends waiting for a lock at once, buffers written by checkpoints,
        whether a checkpoint was under way."""
        out: list[dict[str, Any]] = []
        previous = next((s[5] for s in self.samples if s[0] < start), None)
        for second in range(seconds):
            inside = [s for s in self.samples if start + second <= s[0] < start + second + 1]
            written = (inside[-1][5] - previous) if inside and previous is not None else 0
            if inside:
                previous = inside[-1][5]
            out.append({
                "vacuum": sorted({self._table(r) for s in inside for r in s[1]}),
                "analyze": sorted({self._table(r) for s in inside for r in s[2]}),
                "lock_waits": max((s[3] for s in inside), default=0),
                "checkpoint": any(s[4] not in (None, "CheckpointerMain") for s in inside),
                "checkpoint_buffers": written})
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
