"""Acceptance of the command line of CONTRACT §4: the installed ``bonychat`` in a
subprocess (several at once where they are independent, to keep the suite fast)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import Contract
from .contract_client import clean_env, ok_json, run, run_many
from .contract_scenarios import lifecycle_stories

pytestmark = pytest.mark.e2e

ROW_FIELDS = ["conversation_id", "workspace_id", "contact_id", "channel", "status",
              "opened_at", "closed_at", "opened_by", "closed_by", "closed_by_actor",
              "assignee_id", "team_id", "category", "summary", "resolution_seconds",
              "messages_received", "messages_sent"]
METRICS_CSV = ["key", "opened", "closed", "resolution_count", "resolution_avg",
               "resolution_p50", "resolution_p90", "resolution_min", "resolution_max"]


def test_import_file_into_the_default_database_and_replay_equals_live(
        contract: Contract, tmp_path: Path) -> None:
    merge = next(s for s in lifecycle_stories() if s.ws == "l-merge")
    (tmp_path / "events.jsonl").write_text("\n\n".join(merge.lines) + "\n\n")
    summary = ok_json(run(["import", "events.jsonl"], cwd=tmp_path))
    assert summary == {"read": 13, "accepted": 9, "duplicate": 0,
                       "rejected": {"already_merged": 2, "invalid_merge": 2}, "invalid": 0}
    assert (tmp_path / "bonychat.db").exists()
    live = contract.conversations("l-merge")
    live_metrics = contract.metrics("l-merge", group_by="closed_by")
    replayed = run(["replay", "--no-progress"], cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    rows, metrics = run_many([["conversations", "--workspace", "l-merge", "--format", "json"],
                              ["metrics", "--workspace", "l-merge", "--group-by", "closed_by",
                               "--format", "json"]], cwd=tmp_path)
    assert ok_json(rows) == live
    assert ok_json(metrics) == live_metrics


def test_cli_metrics_json_equals_http_metrics(contract: Contract) -> None:
    queries: list[dict[str, str]] = [
        {"group_by": "day", "tz": "America/New_York", "from": "2026-11-24", "to": "2026-11-25"},
        {"group_by": "week", "tz": "Europe/Berlin"}, {"group_by": "assignee"}, {}]
    workspaces = ["m-range", "m-week", "l-assign", "s-bh"]  # s-bh: its zone, its hours
    commands = []
    for ws, query in zip(workspaces, queries, strict=True):
        args = ["metrics", "--workspace", ws, "--format", "json"]
        for key, value in query.items():
            args += [f"--{key.replace('_', '-')}", value]
        commands.append(args)
    for ws, query, result in zip(workspaces, queries,
                                 run_many(commands, db=contract.db), strict=True):
        assert ok_json(result) == contract.metrics(ws, **query), (ws, query)


def test_metrics_default_is_day_grouping_as_a_table(contract: Contract) -> None:
    result = run(["metrics", "--workspace", "m-example"], db=contract.db)
    assert result.returncode == 0, result.stderr
    assert "2026-11-24" in result.stdout
    with pytest.raises(ValueError):
        json.loads(result.stdout)


def test_metrics_csv_has_one_line_per_row_sorted_by_key(contract: Contract) -> None:
    result = run(["metrics", "--workspace", "l-merge", "--group-by", "closed_by",
                  "--format", "csv"], db=contract.db)
    assert result.returncode == 0, result.stderr
    lines = list(csv.reader(io.StringIO(result.stdout)))
    assert lines[0][:9] == METRICS_CSV
    assert [line[:9] for line in lines[1:]] == [
        ["merge", "", "2", "0", "", "", "", "", ""],
        ["user", "", "1", "1", "300.0", "300.0", "300.0", "300.0", "300.0"]]


def test_conversations_sorted_by_opened_at_then_contact_with_row_fields_in_order(
        contract: Contract) -> None:
    everything, both, table, as_csv = run_many([
        ["conversations", "--workspace", "l-open", "--format", "json"],
        ["conversations", "--workspace", "l-open", "--contact", "c2", "--status", "closed",
         "--format", "json"],
        ["conversations", "--workspace", "l-open"],
        ["conversations", "--workspace", "l-open", "--format", "csv"]], db=contract.db)
    rows: list[dict[str, Any]] = ok_json(everything)
    assert all(list(r)[:17] == ROW_FIELDS for r in rows)
    assert [(r["opened_at"][11:16], r["contact_id"]) for r in rows] == [
        ("10:00", "c1"), ("10:00", "c2"), ("10:03", "c1"), ("11:00", "c2"), ("12:00", "c2"),
        ("13:00", "c2")]
    assert [r["opened_at"][11:16] for r in ok_json(both)] == ["10:00", "11:00", "12:00"]
    assert table.returncode == 0 and "c2" in table.stdout, table.stderr
    assert as_csv.returncode == 0, as_csv.stderr
    lines = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(lines[0])[:17] == ROW_FIELDS
    assert [line["conversation_id"] for line in lines] == [r["conversation_id"] for r in rows]


def test_database_url_option_and_environment_select_the_database(contract: Contract) -> None:
    """Also: the workspace_id pattern admits 64 characters and ``-``/``_`` (l-env's lines)."""
    option, after, environment = run_many([
        ["--database-url", str(contract.db), "conversations", "--workspace", "w" * 64,
         "--format", "json"],
        ["conversations", "--database-url", str(contract.db), "--workspace", "Az_09-x",
         "--format", "json"],
        ["conversations", "--workspace", "w" * 64, "--format", "json"]],
        env=clean_env(BONYCHAT_DATABASE_URL=str(contract.db)))
    assert ok_json(option) == ok_json(environment)
    assert [r["contact_id"] for r in ok_json(option)] == ["c1"]
    assert [r["contact_id"] for r in ok_json(after)] == ["c1"]


USAGE_ERRORS = [
    ["metrics"], ["metrics", "--workspace", "ws1", "--group-by", "hour"],
    ["metrics", "--workspace", "ws1", "--from", "2026-13-01", "--tz", "Mars/Olympus"],
    ["conversations", "--workspace", "ws1", "--status", "pending"],
]


def test_usage_errors_exit_2_without_traceback(contract: Contract) -> None:
    results = run_many(USAGE_ERRORS, db=contract.db)
    wrong = [(r.args[1:], r.returncode, r.stderr) for r in results
             if r.returncode != 2 or "Traceback" in r.stderr or not r.stderr.strip()]
    assert not wrong


def test_runtime_failures_exit_1_with_one_line_on_stderr(tmp_path: Path) -> None:
    unreachable = "postgresql://bonychat@127.0.0.1:1/bonychat?connect_timeout=2"
    results = run_many([
        ["import", str(tmp_path / "missing.jsonl")],
        ["import", str(tmp_path)],
        ["--database-url", unreachable, "metrics", "--workspace", "ws1"],
    ], db=tmp_path / "x.db", stdin="")
    wrong = [(r.args[1:], r.returncode, r.stderr) for r in results
             if r.returncode != 1 or len(r.stderr.strip().splitlines()) != 1
             or "Traceback" in r.stderr]
    assert not wrong
