"""bench.dbwatch: what PostgreSQL did in each second of a latency phase, and the
server log's autovacuum and checkpoint lines of that phase (our schema's only)."""

from __future__ import annotations

import gc
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.dbwatch import DatabaseWatch, Sample
from bench.gcstats import NO_FULL_COLLECTIONS, OwnPauses, frozen_heap
from bench.report import by_second_lines

T0 = datetime(2026, 11, 30, 4, 54, 30, tzinfo=UTC).timestamp()


def watch() -> DatabaseWatch:
    found = DatabaseWatch("postgresql://unused", "bench_ab")
    found.started, found.ended = T0, T0 + 3
    return found


def test_each_second_says_what_was_vacuumed_waited_for_and_checkpointed() -> None:
    found = watch()
    found.samples = [
        Sample(T0 - 0.1, [], [], 0, "CheckpointerMain", 100, 7, 0, 10_000, 5),
        Sample(T0 + 0.2, ["bench_ab.stored_events"], [], 1, "CheckpointWriteDelay", 110, 7,
               1, 20_240, 9),
        Sample(T0 + 0.7, ["bench_ab.stored_events", "other.t"], ["bench_ab.conversations"], 2,
               "CheckpointWriteDelay", 130, 8, 2, 30_480, 30),
        Sample(T0 + 1.5, [], [], 0, "CheckpointerMain", 135, 8, 0, 31_504, 30),
    ]
    first, second, third = found.by_second(T0, 3)
    assert first == {"vacuum": ["(other.t)", "stored_events"], "analyze": ["conversations"],
                     "lock_waits": 2, "autovacuum_workers": 2, "checkpoint": True,
                     "checkpoint_started": True, "checkpoint_buffers": 30, "wal_kb": 20,
                     "wal_fpi": 25}
    assert second == {"vacuum": [], "analyze": [], "lock_waits": 0, "autovacuum_workers": 0,
                      "checkpoint": False, "checkpoint_started": False,
                      "checkpoint_buffers": 5, "wal_kb": 1, "wal_fpi": 0}
    assert third["checkpoint_buffers"] == 0 and not third["vacuum"]


def test_a_checkpoint_under_way_before_the_phase_did_not_start_in_it() -> None:
    found = watch()
    found.samples = [Sample(T0 - 0.1, [], [], 0, "CheckpointWriteDelay", 0, 4),
                     Sample(T0 + 0.5, [], [], 0, "CheckpointWriteDelay", 0, 4),
                     Sample(T0 + 1.5, [], [], 0, "CheckpointerMain", 0, 4),
                     Sample(T0 + 2.5, [], [], 0, "CheckpointWriteDelay", 0, 4)]
    assert [(s["checkpoint"], s["checkpoint_started"]) for s in found.by_second(T0, 3)] == [
        (True, False), (False, False), (True, True)]


def test_the_log_keeps_our_cancelled_vacuum_and_checkpoints_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "postgres.log").write_text(
        "2026-11-30 04:54:13.709 UTC [1753] LOG:  checkpoint starting: wal\n"  # before
        "2026-11-30 04:54:31.833 UTC [3858] ERROR:  canceling autovacuum task\n"
        '2026-11-30 04:54:31.833 UTC [3858] CONTEXT:  while scanning block 3988 of relation '
        '"bench_ab.stored_events"\n'
        "\tautomatic vacuum of table \"bonychat.bench_ab.stored_events\"\n"
        '2026-11-30 04:54:32.000 UTC [3900] LOG:  automatic vacuum of table '
        '"bonychat.t_other.stored_events": index scans: 0\n'
        '2026-11-30 04:54:32.100 UTC [3900] ERROR:  relation "x" does not exist\n'
        "2026-11-30 04:54:32.500 UTC [1753] LOG:  checkpoint complete: wrote 5 buffers\n")
    monkeypatch.setenv("BONYCHAT_INFRA_STATE", str(tmp_path))
    assert watch().log() == [
        '04:54:31.833 +1.8s canceling autovacuum task (while scanning block 3988 of '
        'relation "stored_events")',
        "04:54:32.500 +2.5s checkpoint complete: wrote 5 buffers"]


def test_the_report_prints_each_second_with_what_the_database_did() -> None:
    run = {"by_second": [
        {"second": 0, "p50_ms": 39, "p99_ms": 70, "database": {"lock_waits": 0}},
        {"second": 1, "p50_ms": 366, "p99_ms": 1036, "database": {
            "vacuum": ["stored_events"], "lock_waits": 1, "autovacuum_workers": 1,
            "checkpoint": True, "checkpoint_started": True, "wal_fpi": 812}}],
        "database_log": ["04:54:31.833 +1.8s canceling autovacuum task"],
        "gc": {"relay": {"gen0": 3, "gen1": 0, "gen2": 0, "ms": 0.0},
               "conversation": {"gen0": 2, "gen1": 1, "gen2": 1, "ms": 262.5,
                                "longest_under_ms": 250.0}}}
    assert by_second_lines("1,000/s", run) == [
        "  latency at 1,000/s by second (p50/p99 ms; PostgreSQL): s0 39/70, "
        "s1 366/1036 [vacuum stored_events; 1 waiting for a lock; 1 autovacuum workers; "
        "checkpoint started; 812 full-page images]",
        "    collector (gen0/1/2 collections): conversation 2/1/1 in 262.5 ms "
        "(longest <= 250.0 ms)",
        "    postgres log: 04:54:31.833 +1.8s canceling autovacuum task"]


def test_the_report_names_the_harness_s_own_collector_pauses() -> None:
    run = {"by_second": [
        {"second": 0, "p50_ms": 40, "p99_ms": 70, "database": {}, "harness_gc_ms": 0.0},
        {"second": 1, "p50_ms": 60, "p99_ms": 190, "database": {"vacuum": ["conversations"]},
         "harness_gc_ms": 104.2}],
        "harness_gc": {"gen0": 40, "gen1": 3, "gen2": 1, "ms": 110.5, "longest_ms": 101.0}}
    assert by_second_lines("1,000/s", run) == [
        "  latency at 1,000/s by second (p50/p99 ms; PostgreSQL): s0 40/70, "
        "s1 60/190 [vacuum conversations; harness gc 104.2 ms]",
        "    collector (gen0/1/2 collections): bench harness 40/3/1 in 110.5 ms "
        "(longest 101.0 ms)"]


def test_own_pauses_are_timed_by_generation_and_second() -> None:
    started = time.perf_counter()
    gc.disable()  # only the collections asked for here
    try:
        with OwnPauses() as own:
            gc.collect()  # a full collection: generation 2
            gc.collect(0)
    finally:
        gc.enable()
    assert [gen for *_, gen in own.pauses] == [2, 0]
    summary = own.summary()
    assert (summary["gen0"], summary["gen1"], summary["gen2"]) == (1, 0, 1)
    assert summary["ms"] >= summary["longest_ms"] > 0
    by_second = own.ms_by_second(started, 3)
    assert by_second[0] == pytest.approx(summary["ms"], abs=0.2) and by_second[1:] == [0, 0]
    assert own.ms_by_second(started + 5, 2) == [0, 0]  # began before that start: left out
    gc.collect()
    assert len(own.pauses) == 2  # not timed once the block is left


def test_the_heap_is_frozen_for_a_phase_and_thawed_after() -> None:
    held = [[n] for n in range(10_000)]  # containers: tracked by the collector
    thresholds = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert gc.get_freeze_count() >= len(held)
        assert gc.get_threshold() == (*thresholds[:2], NO_FULL_COLLECTIONS)
        with OwnPauses() as own:
            gc.collect()
        assert own.pauses and own.pauses[0][2] == 2
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("a failed phase")
    assert gc.get_freeze_count() == 0  # thawed on the way out
    assert gc.get_threshold() == thresholds


def test_the_table_splits_postgres_per_event_by_client() -> None:
    """The backlog's PostgreSQL CPU per event, by whom it served, is one line of the table."""
    from bench.report import table

    results = {"mode": "full", "e2e": {"postgres_us_per_event_by_client": {
        "background": 2.04, "conversation": 30.5, "projections": 8.25}}}
    lines = [line for line in table(results).splitlines() if "by client" in line]
    assert lines == ["  PostgreSQL µs per event (e2e) by client: background 2.0, "
                     "conversation 30.5, projections 8.2"]
    assert "by client" not in table({"mode": "full", "e2e": {}})
