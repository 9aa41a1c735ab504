"""Embedded-runtime benchmarks: `bonychat import` and `bonychat replay` on SQLite.

Each measurement runs the installed CLI in a child process, so the figures are
what a user sees, and reads the child's peak RSS from the kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from .generate import Generator, write

DATA = Path(__file__).with_name(".data")


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    peak_rss_mb: float
    stdout: str


def bonychat() -> str:
    candidate = Path(sys.executable).with_name("bonychat")
    return str(candidate) if candidate.exists() else "bonychat"


def events_file(events: int, contacts: int, workspaces: int = 5) -> Path:
    """A cached generated JSONL file of the given size."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"events-{events}-{contacts}-{workspaces}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            write(Generator(events=events, contacts=contacts, workspaces=workspaces), handle)
        tmp.rename(path)
    return path


def run_child(args: list[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run a command, return wall time, its own peak RSS and stdout (raises on failure)."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, env=env)
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip()[-3000:]
            raise RuntimeError(f"{' '.join(args)} failed: {tail}")
    return ChildRun(seconds, usage.ru_maxrss / 1024, out)


def fresh_db(name: str) -> Path:
    DATA.mkdir(exist_ok=True)
    db = DATA / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return db


def measure_import(events: int, contacts: int) -> dict[str, float]:
    """Import throughput and peak RSS, then replay throughput of the same store."""
    source = events_file(events, contacts)
    db = fresh_db(f"bench-{events}.db")
    env = {**os.environ, "BONYCHAT_DATABASE_URL": str(db)}
    imported = run_child([bonychat(), "import", str(source), "--no-progress"], env)
    summary = orjson.loads(imported.stdout)
    replayed = run_child([bonychat(), "replay", "--no-progress"], env)
    stored = orjson.loads(replayed.stdout)["replayed_events"]
    fresh_db(db.name)  # the store is large (~0.7 GB for 1M events): do not keep it
    return {
        "embedded_import_events": summary["read"],
        "embedded_import_seconds": round(imported.seconds, 3),
        "embedded_import_events_per_s": round(summary["read"] / imported.seconds),
        "embedded_import_peak_rss_mb": round(imported.peak_rss_mb, 1),
        "embedded_replay_stored_events": stored,
        "embedded_replay_seconds": round(replayed.seconds, 3),
        "embedded_replay_events_per_s": round(stored / replayed.seconds),
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(orjson.dumps(measure_import(n, max(n // 10, 1)), option=orjson.OPT_INDENT_2).decode())
