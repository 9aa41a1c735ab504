"""bench.settle: when autovacuum is done with a schema's tables (PostgreSQL's own
thresholds, each table's reloptions over the server's), and the report's rows."""

from __future__ import annotations

from bench.report import settled_rows
from bench.settle import Table, due, unsettled

SERVER = {"autovacuum_vacuum_threshold": 50.0, "autovacuum_vacuum_scale_factor": 0.2,
          "autovacuum_vacuum_insert_threshold": 1000.0,
          "autovacuum_vacuum_insert_scale_factor": 0.2,
          "autovacuum_analyze_threshold": 50.0, "autovacuum_analyze_scale_factor": 0.1}
INSERT_ONLY = {"autovacuum_vacuum_insert_scale_factor": "0",
               "autovacuum_vacuum_insert_threshold": "100000"}


def test_an_insert_only_table_is_due_after_its_own_insert_threshold() -> None:
    events = Table("stored_events", 1_000_000, INSERT_ONLY, 0, 99_000, 0)
    assert due(events, SERVER) == []  # the server's 20 % would wait for 201,000
    assert due(Table("stored_events", 1_000_000, INSERT_ONLY, 0, 100_001, 0), SERVER) == [
        "vacuum (inserts)"]
    assert due(Table("stored_events", 1_000_000, {}, 0, 100_001, 0), SERVER) == []


def test_updated_rows_make_a_table_due_for_vacuum_and_analyze() -> None:
    conversations = Table("conversations", 100_000, {}, 20_051, 0, 10_051)
    assert due(conversations, SERVER) == ["vacuum (dead rows)", "analyze"]
    assert due(Table("conversations", 100_000, {}, 20_049, 0, 10_049), SERVER) == []
    off = Table("conversations", 100_000, {"autovacuum_enabled": "false"}, 90_000, 0, 90_000)
    assert due(off, SERVER) == []


def test_work_under_way_is_unsettled_even_below_the_thresholds() -> None:
    tables = [Table("stored_events", 10, {}, 0, 0, 0, vacuuming=True),
              Table("conversations", 10, {}, 0, 0, 0, analyzing=True),
              Table("dead_letters", 10, {}, 0, 0, 0)]
    assert unsettled(tables, SERVER) == {"stored_events": ["vacuum under way"],
                                         "conversations": ["analyze under way"]}
    assert unsettled(tables[2:], SERVER) == {}


def test_the_report_says_how_long_it_waited_and_for_what() -> None:
    results = {"settle": {"settled": False, "waited_s": 240.0, "checkpoint_under_way": True,
                          "waited_for": {"stored_events": ["vacuum (inserts)"]}},
               "pipeline_cores_at_low_rate_settled": 0.41,
               "latency_low_rate_settled": {"p50_ms": 45.0, "p99_ms": 71.0,
                                            "achieved_rate_per_s": 1000},
               "latency_settled": {"p50_ms": 60.0, "p99_ms": 120.0,
                                   "achieved_rate_per_s": 4990}}
    rows = settled_rows(results)
    assert rows[0] == ("settled: waited for autovacuum", 240.0, "s",
                       "NOT settled (timeout); waited for stored_events: vacuum (inserts); "
                       "a checkpoint under way")
    assert rows[2][1:] == (45.0, "ms", "p99 71 ms at 1,000/s")
    assert settled_rows({}) == []


def test_the_settled_targets_are_checked_only_when_the_run_measured_them() -> None:
    from bench.report import evaluate

    assert not [n for n in evaluate({}) if n.endswith("_settled")]
    found = evaluate({"settle": {"settled": True}, "latency_p99_ms_settled": 260.0,
                      "latency_low_rate_settled": {"p99_ms": 70.0}})
    assert found["latency_p99_ms_at_5000_per_s_settled"]["pass"] is False
    assert found["latency_p99_ms_at_1000_per_s_settled"]["pass"] is True
    assert found["pipeline_cores_at_1000_per_s_settled"]["pass"] is None
