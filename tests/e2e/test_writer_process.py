"""The bulk import with a forked writer process, on real SQLite files.

Whatever the writer does (group batches, lose them to a conflict with another
process, fail), the importer ends with exactly what a plain in-process import
of the same lines gives, or with a clear error.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bench.generate import Generator, write
from services.bulk_import.parse import ParallelParser
from services.bulk_import.writer import WriterFailed, WriterProcess
from services.composition import Stores, writer_pipeline
from services.composition.sqlite import open_sqlite_stores
from services.conversation.adapters.store_sqlite import SQLiteEventStore, StoredRow
from services.conversation.application.ports import ConcurrencyConflict, StoredKeys
from services.in_process.pipeline import EmbeddedPipeline, ImportSummary
from services.projections.domain.metrics import MetricsQuery, compute

CACHE = 40  # far fewer than the contacts: the cache evicts during the import
# (and pipelined imports keep 1,500 lines in flight: they wait for the writer)
WORKSPACES = ("ws0", "ws1", "ws2")


@pytest.fixture(scope="module")
def sample() -> list[bytes]:
    out = io.BytesIO()
    write(Generator(events=6_000, contacts=150, workspaces=3, seed=11), out)
    return out.getvalue().splitlines()


def state(path: Path) -> dict[str, Any]:
    """Conversation rows, day metrics of each workspace, outcomes, stored event count."""
    stores = open_sqlite_stores(str(path))
    try:
        found: dict[str, Any] = {}
        for ws in WORKSPACES:
            found[ws] = [r.public() for r in stores.read_models.conversations(ws)]
            query = MetricsQuery(workspace_id=ws, group_by="day", tz="Europe/Berlin")
            found[f"{ws}-metrics"] = compute(query, stores.read_models.facts(ws))
        found["stored"] = stores.events.max_notification_id()
        events = stores.events
        assert isinstance(events, SQLiteEventStore)
        with events.datastore.transaction(commit=False) as c:
            c.execute("SELECT * FROM processed_events ORDER BY workspace_id, event_id")
            found["outcomes"] = [tuple(row) for row in c.fetchall()]
        return found
    finally:
        stores.close()


def inline_import(path: Path, lines: list[bytes]) -> ImportSummary:
    stores = open_sqlite_stores(str(path))
    try:
        return EmbeddedPipeline(stores.events, stores.read_models, batch_size=500).run_inline(lines)
    finally:
        stores.close()


def pipelined_import(path: Path, lines: list[bytes],
                     writer_stores: Callable[[], Stores] | None = None,
                     importer_stores: Callable[[], Stores] | None = None,
                     window: int = 1_500) -> ImportSummary:
    open_sqlite_stores(str(path)).close()  # schema first, as the CLI does
    with ParallelParser() as parser, \
            WriterProcess(writer_stores or (lambda: open_sqlite_stores(str(path))),
                          writer_pipeline) as writer:
        stores = (importer_stores or (lambda: open_sqlite_stores(str(path))))()
        try:
            pipeline = EmbeddedPipeline(stores.events, stores.read_models, batch_size=500)
            pipeline.uow.processor.cache_size = CACHE
            summary = pipeline.run_pipelined(iter(lines), writer, parser=parser, window=window)
        finally:
            stores.close()
        writer.finish()
    return summary


class ConflictOnce(SQLiteEventStore):
    """Refuses the second commit once, as if another process had taken a version."""

    calls: ClassVar[int] = 0

    def commit_rows(self, rows: Any, outcomes: Any, dead_letters: Any, position: Any,
                    read: Any = None) -> list[int]:
        type(self).calls += 1
        if type(self).calls == 2:
            raise ConcurrencyConflict("version taken by another writer (test)")
        return super().commit_rows(rows, outcomes, dead_letters, position, read)


class StaleKeys(SQLiteEventStore):
    """Its snapshot of stored keys misses what another process wrote."""

    def stored_keys(self, limit: int = 0) -> StoredKeys:
        return StoredKeys(set(), set())


class Broken(SQLiteEventStore):
    def commit_rows(self, rows: list[StoredRow], *args: Any) -> list[int]:
        raise OSError("disk full (test)")


def with_events(path: Path, cls: type[SQLiteEventStore]) -> Callable[[], Stores]:
    def open_() -> Stores:
        stores = open_sqlite_stores(str(path))
        events = stores.events
        assert isinstance(events, SQLiteEventStore)
        stores.events = cls(events.datastore)
        return stores
    return open_


Expected = tuple[ImportSummary, dict[str, Any]]


@pytest.fixture
def expected(tmp_path: Path, sample: list[bytes]) -> Iterator[Expected]:
    summary = inline_import(tmp_path / "inline.db", sample)
    yield summary, state(tmp_path / "inline.db")


def test_the_pipelined_import_equals_the_inline_one(
        tmp_path: Path, sample: list[bytes], expected: Expected) -> None:
    summary = pipelined_import(tmp_path / "p.db", sample)
    assert summary.as_dict() == expected[0].as_dict()
    assert summary.duplicate > 0 and summary.invalid > 0 and summary.rejected
    assert state(tmp_path / "p.db") == expected[1]


def test_batches_lost_to_a_conflict_are_redone_from_storage(
        tmp_path: Path, sample: list[bytes], expected: Expected) -> None:
    path = tmp_path / "c.db"
    summary = pipelined_import(path, sample, with_events(path, ConflictOnce))
    assert summary.as_dict() == expected[0].as_dict()
    assert state(path) == expected[1]


def test_a_failing_writer_stops_the_import_with_its_reason(
        tmp_path: Path, sample: list[bytes]) -> None:
    path = tmp_path / "f.db"
    with pytest.raises(WriterFailed, match="disk full"):
        pipelined_import(path, sample, with_events(path, Broken))


def test_importing_the_same_lines_again_changes_nothing(
        tmp_path: Path, sample: list[bytes], expected: Expected) -> None:
    path = tmp_path / "twice.db"
    pipelined_import(path, sample)
    again = pipelined_import(path, sample)
    assert again.accepted == 0 and again.rejected == {}
    assert again.duplicate == expected[0].accepted + sum(expected[0].rejected.values()) \
        + expected[0].duplicate
    assert state(path) == expected[1]


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def test_a_killed_import_leaves_no_worker_behind(tmp_path: Path) -> None:
    source = tmp_path / "big.jsonl"
    with source.open("wb") as out:
        write(Generator(events=300_000, contacts=30_000, workspaces=3, seed=5), out)
    bonychat = Path(sys.executable).with_name("bonychat")
    proc = subprocess.Popen([str(bonychat), "import", str(source), "--no-progress"],
                            env={**os.environ, "BONYCHAT_DATABASE_URL": str(tmp_path / "k.db"),
                                 "BONYCHAT_IMPORT_MODE": "processes"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    workers: set[int] = set()
    while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
        workers = children_of(proc.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the parser and writer processes never started"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        time.sleep(0.2)
    left = [p for p in workers if Path(f"/proc/{p}").exists()
            and "bonychat" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
    assert not left, f"workers outlived the killed import: {left}"


def test_keys_another_process_stored_meanwhile_are_not_counted_twice(
        tmp_path: Path, sample: list[bytes], expected: Expected) -> None:
    path = tmp_path / "stale.db"
    first = inline_import(path, sample[: len(sample) // 2])  # "another process"
    summary = pipelined_import(path, sample, importer_stores=with_events(path, StaleKeys))
    assert summary.read == len(sample)
    assert summary.duplicate == expected[0].duplicate + first.accepted \
        + sum(first.rejected.values())
    assert state(path) == expected[1]
