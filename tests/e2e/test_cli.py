"""CONTRACT §4: the installed ``bonychat`` command, driven as a user drives it.

Every test runs the console script in a subprocess against an SQLite file in a
temporary folder (``BONYCHAT_DATABASE_URL``), and checks stdout, stderr and the
exit status.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROW_FIELDS = ["conversation_id", "workspace_id", "contact_id", "channel", "status",
              "opened_at", "closed_at", "opened_by", "closed_by", "closed_by_actor",
              "assignee_id", "team_id", "category", "summary", "resolution_seconds",
              "messages_received", "messages_sent",
              # CONTRACT §6.6, in this order after the others
              "first_message_at", "first_response_at", "first_responder_id",
              "first_response_seconds", "first_response_business_seconds",
              "resolution_business_seconds", "last_activity_at", "recontact"]
SUMMARY_KEYS = ["read", "accepted", "duplicate", "rejected", "invalid"]
NULL_STATS = {"count": 0, "avg": None, "p50": None, "p90": None, "min": None, "max": None}
EXAMPLE_STATS = {"count": 2, "avg": 90.0, "p50": 90.0, "p90": 114.0, "min": 60.0,
                 "max": 120.0}
#: what CONTRACT §6.6 adds to a metrics row with no first responses and no schedule
LEVELS = {"first_response_seconds": NULL_STATS, "first_response_business_seconds": NULL_STATS,
          "resolution_business_seconds": EXAMPLE_STATS, "recontacts": 0}


def bonychat_command() -> list[str]:
    """The installed console script (next to this interpreter), else any on PATH."""
    beside = Path(sys.executable).parent / "bonychat"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("bonychat")
    return [found] if found else [sys.executable, "-m", "services.cli.main"]


def envelope(event_id: str, kind: str, contact: str, at: str, ws: str = "ws1",
             **fields: Any) -> str:
    return json.dumps({"event_id": event_id, "type": kind, "workspace_id": ws,
                       "contact_id": contact, "occurred_at": at, **fields})


MISSING_CHANNEL = envelope("e-bad", "message.received", "c9", "2026-11-24T12:00:00Z")
LINES = [
    envelope("e1", "message.received", "c1", "2026-11-24T09:00:00Z",
             channel={"type": "whatsapp", "id": "+4930"}, data={"text": "hi"}),
    "",
    envelope("e2", "conversation.close", "c1", "2026-11-24T09:01:00Z",
             actor={"type": "user", "id": "u1"}, data={"category": "billing",
                                                       "summary": "refund sent"}),
    envelope("e3", "message.received", "c2", "2026-11-24T10:00:00Z",
             channel={"type": "facebook"}),
    envelope("e4", "conversation.assign", "c2", "2026-11-24T10:00:30Z",
             actor={"type": "user", "id": "u1"}, data={"assignee_id": "ann", "team_id": "t1"}),
    envelope("e5", "conversation.close", "c2", "2026-11-24T10:02:00Z",
             actor={"type": "automation", "id": "rule-5"}),
    envelope("e6", "message.received", "c3", "2026-11-24T11:00:00+05:30",
             channel={"type": "sms"}, future_field={"ignored": True}),
    envelope("e7", "conversation.close", "c4", "2026-11-24T12:00:00Z",
             actor={"type": "user"}),
    envelope("e8", "welcome", "c5", "2026-11-24T12:00:00Z", channel={"type": "sms"}),
    envelope("e1", "message.received", "c1", "2026-11-24T09:00:00Z",
             channel={"type": "whatsapp", "id": "+4930"}, data={"text": "hi"}),
    "not json at all",
    MISSING_CHANNEL,
    "   \t",
    envelope("e9", "message.received", "c1", "2026-11-25T08:00:00Z", ws="ws2",
             channel={"type": "line"}),
]
FIRST_SUMMARY = {"read": 12, "accepted": 7, "duplicate": 1,
                 "rejected": {"no_open_conversation": 1, "welcome_not_supported": 1},
                 "invalid": 2}
REIMPORT_SUMMARY = {"read": 12, "accepted": 0, "duplicate": 10, "rejected": {}, "invalid": 2}


class Cli:
    """Runs ``bonychat`` with a database of its own in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.db = folder / "bonychat-test.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BONYCHAT_")}
        self.env["BONYCHAT_DATABASE_URL"] = str(self.db)

    def run(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*bonychat_command(), *args], input=stdin, text=True,
                              capture_output=True, cwd=self.folder, env=env or self.env,
                              timeout=120, check=False)

    def ok(self, *args: str, stdin: str | None = None) -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        return done.stdout

    def json(self, *args: str, stdin: str | None = None) -> Any:
        out = self.ok(*args, stdin=stdin)
        assert out.strip().count("\n") == 0, "expected exactly one JSON document line"
        return json.loads(out)

    def write(self, name: str, lines: list[str], newline: str = "\n") -> Path:
        path = self.folder / name
        path.write_bytes(newline.join(lines).encode() + newline.encode())
        return path


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A database with LINES imported once, shared by the read-only tests."""
    cli = Cli(tmp_path_factory.mktemp("loaded"))
    assert cli.json("import", str(cli.write("events.jsonl", LINES))) == FIRST_SUMMARY
    return cli


def assert_one_line_error(done: subprocess.CompletedProcess[str], status: int) -> None:
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].strip()


# ---------------------------------------------------------------------- import
def test_import_prints_the_summary(cli: Cli) -> None:
    out = cli.ok("import", str(cli.write("events.jsonl", LINES)))
    summary = json.loads(out)
    assert summary == FIRST_SUMMARY
    assert list(summary) == SUMMARY_KEYS
    assert out.strip().count("\n") == 0


def test_import_from_stdin(cli: Cli) -> None:
    assert cli.json("import", "-", stdin="\n".join(LINES) + "\n") == FIRST_SUMMARY


def test_reimport_reports_duplicates(cli: Cli) -> None:
    path = cli.write("events.jsonl", LINES)
    cli.ok("import", str(path))
    assert cli.json("import", str(path)) == REIMPORT_SUMMARY
    assert cli.json("import", "-", stdin="\n".join(LINES)) == REIMPORT_SUMMARY


def test_blank_lines_are_skipped_and_not_counted(cli: Cli) -> None:
    empty = {"read": 0, "accepted": 0, "duplicate": 0, "rejected": {}, "invalid": 0}
    assert cli.json("import", str(cli.write("blank.jsonl", ["", "  ", "\t", ""]))) == empty
    assert cli.json("import", "-", stdin="") == empty
    assert cli.json("import", "-", stdin="\n\n" + LINES[0] + "\n\n\n") == {
        **empty, "read": 1, "accepted": 1}


def test_crlf_files_and_a_missing_final_newline(cli: Cli) -> None:
    path = cli.write("windows.jsonl", LINES, newline="\r\n")
    assert cli.json("import", str(path)) == FIRST_SUMMARY
    assert cli.json("import", "-", stdin=LINES[3]) == {
        "read": 1, "accepted": 0, "duplicate": 1, "rejected": {}, "invalid": 0}


def test_import_is_successful_with_rejected_and_invalid_lines(cli: Cli) -> None:
    done = cli.run("import", "-", stdin="garbage\n" + LINES[7] + "\n")
    assert done.returncode == 0
    assert json.loads(done.stdout) == {"read": 2, "accepted": 0, "duplicate": 0,
                                       "rejected": {"no_open_conversation": 1}, "invalid": 1}


def test_invalid_lines_land_in_dead_letters_with_raw_text_and_reason(loaded: Cli) -> None:
    with sqlite3.connect(loaded.db) as db:
        letters = db.execute("SELECT raw, reason FROM dead_letters ORDER BY id").fetchall()
    assert [raw for raw, _ in letters] == ["not json at all", MISSING_CHANNEL]
    assert all(reason.strip() for _, reason in letters)
    assert "channel" in letters[1][1]


# --------------------------------------------------------------------- metrics
def test_metrics_json_is_the_contract_example(loaded: Cli) -> None:
    result = loaded.json("metrics", "--workspace", "ws1", "--format", "json")
    assert result == {
        "workspace_id": "ws1", "group_by": "day", "tz": "UTC", "from": None, "to": None,
        "rows": [{"key": "2026-11-24", "opened": 3, "closed": 2,
                  "resolution_seconds": EXAMPLE_STATS, **LEVELS}],
        "total": {"key": None, "opened": 3, "closed": 2, "resolution_seconds": EXAMPLE_STATS,
                  **LEVELS},
    }
    assert list(result) == ["workspace_id", "group_by", "tz", "from", "to", "rows", "total"]


def test_metrics_in_a_zone_with_a_range(loaded: Cli) -> None:
    result = loaded.json("metrics", "--workspace", "ws1", "--format", "json",
                         "--tz", "America/Los_Angeles")
    assert [(r["key"], r["opened"], r["closed"]) for r in result["rows"]] == [
        ("2026-11-23", 1, 0), ("2026-11-24", 2, 2)]
    ranged = loaded.json("metrics", "--workspace", "ws1", "--format", "json",
                         "--tz", "America/Los_Angeles", "--from", "2026-11-24",
                         "--to", "2026-11-24")
    assert (ranged["tz"], ranged["from"], ranged["to"]) == (
        "America/Los_Angeles", "2026-11-24", "2026-11-24")
    assert (ranged["total"]["opened"], ranged["total"]["closed"]) == (2, 2)
    only_to = loaded.json("metrics", "--workspace", "ws1", "--format", "json",
                          "--tz", "America/Los_Angeles", "--to", "2026-11-23")
    assert (only_to["from"], only_to["total"]["opened"], only_to["total"]["closed"]) == (
        None, 1, 0)


@pytest.mark.parametrize(("group_by", "rows"), [
    ("week", [("2026-W48", 3, 2)]),
    ("month", [("2026-11", 3, 2)]),
    ("channel", [("facebook", 1, 1), ("sms", 1, 0), ("whatsapp", 1, 1)]),
    ("opened_by", [("contact", 3, 2)]),
    ("closed_by", [("automation", None, 1), ("user", None, 1)]),
    ("assignee", [("ann", None, 1), ("unassigned", None, 1)]),
    ("team", [("t1", None, 1), ("unassigned", None, 1)]),
])
def test_metrics_groupings(loaded: Cli, group_by: str, rows: list[tuple[Any, ...]]) -> None:
    result = loaded.json("metrics", "--workspace", "ws1", "--group-by", group_by,
                         "--format", "json")
    assert result["group_by"] == group_by
    assert [(r["key"], r["opened"], r["closed"]) for r in result["rows"]] == rows
    assert (result["total"]["opened"], result["total"]["closed"]) == (3, 2)


def test_metrics_csv(loaded: Cli) -> None:
    out = loaded.ok("metrics", "--workspace", "ws1", "--format", "csv")
    records = list(csv.DictReader(io.StringIO(out)))
    assert len(records) == 1
    record = records[0]
    assert (record["key"], record["opened"], record["closed"]) == ("2026-11-24", "3", "2")
    p90 = [v for k, v in record.items() if "p90" in k]
    assert p90 == ["114.0", "", "", "114.0"]  # resolution, first response (calendar and
    # business hours), business resolution (no schedule: the calendar's)
    assert list(record)[-1] == "recontacts" and record["recontacts"] == "0"
    assert list(record)[9:12] == ["first_response_count", "first_response_avg",
                                  "first_response_p50"]


SUB_MILLISECOND = [
    envelope(f"r{n}-open", "message.received", f"r{n}", "2026-11-24T10:00:00Z",
             channel={"type": "sms"}) for n in range(3)
] + [
    envelope(f"r{n}-close", "conversation.close", f"r{n}", at, actor={"type": "user"})
    for n, at in enumerate(["2026-11-24T10:00:00.1Z", "2026-11-24T10:00:00.2Z",
                            "2026-11-24T10:00:01.0004Z"])
]
ROUNDED_STATS = {"count": 3, "avg": 0.433, "p50": 0.2, "p90": 0.84, "min": 0.1, "max": 1.0}


def decimals(value: float) -> int:
    return len(repr(value).partition(".")[2].rstrip("0"))


def test_durations_in_json_and_csv_have_three_decimals_at_most(cli: Cli) -> None:
    cli.ok("import", "-", stdin="\n".join(SUB_MILLISECOND))
    result = cli.json("metrics", "--workspace", "ws1", "--format", "json")
    assert result["total"]["resolution_seconds"] == ROUNDED_STATS
    assert result["rows"][0]["resolution_seconds"] == ROUNDED_STATS
    record = next(csv.DictReader(io.StringIO(
        cli.ok("metrics", "--workspace", "ws1", "--format", "csv"))))
    assert {k: record[f"resolution_{k}"] for k in ROUNDED_STATS} == {
        "count": "3", "avg": "0.433", "p50": "0.2", "p90": "0.84", "min": "0.1", "max": "1.0"}
    rows = cli.json("conversations", "--workspace", "ws1", "--format", "json")
    assert sorted(r["resolution_seconds"] for r in rows) == [0.1, 0.2, 1.0]
    records = csv.DictReader(io.StringIO(
        cli.ok("conversations", "--workspace", "ws1", "--format", "csv")))
    assert sorted(r["resolution_seconds"] for r in records) == ["0.1", "0.2", "1.0"]
    every = [*ROUNDED_STATS.values(), *(r["resolution_seconds"] for r in rows)]
    assert all(decimals(float(v)) <= 3 for v in every)


def table_columns(lines: list[str]) -> list[tuple[int, int]]:
    rules = [line for line in lines if line.strip() and set(line) <= {"-", " "}]
    assert rules, "a table has a rule line of dashes under its header"
    return [(m.start(), m.end()) for m in re.finditer(r"-+", rules[0])]


def assert_aligned(text: str) -> list[list[str]]:
    """Every line of the table has its cells inside the same column spans."""
    lines = text.splitlines()
    first_rule = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    table = lines[first_rule - 1:]
    columns = table_columns(table)
    cells = []
    for line in table:
        for (_, end), (start, _) in itertools.pairwise(columns):
            gap = line[end:start]
            assert gap.strip() == "", f"misaligned: {line!r}"
        cells.append([line[a:b].strip() for a, b in columns])
    return cells


@pytest.mark.parametrize("group_by", ["day", "channel", "assignee"])
def test_metrics_table_is_aligned(loaded: Cli, group_by: str) -> None:
    grouping = [] if group_by == "day" else ["--group-by", group_by]  # day is the default
    out = loaded.ok("metrics", "--workspace", "ws1", *grouping)
    cells = assert_aligned(out)
    keys = [row[0] for row in cells if row[0] and set(row[0]) != {"-"}]
    assert keys[-1].upper() == "TOTAL"
    expected = {"day": ["2026-11-24"], "channel": ["facebook", "sms", "whatsapp"],
                "assignee": ["ann", "unassigned"]}[group_by]
    assert keys[1:-1] == expected


def test_metrics_for_an_unknown_workspace_is_empty(loaded: Cli) -> None:
    result = loaded.json("metrics", "--workspace", "nobody", "--format", "json")
    assert result["rows"] == []
    assert result["total"] == {"key": None, "opened": 0, "closed": 0,
                               "resolution_seconds": NULL_STATS, **LEVELS,
                               "resolution_business_seconds": NULL_STATS}
    assert loaded.run("metrics", "--workspace", "nobody").returncode == 0
    assert loaded.json("conversations", "--workspace", "nobody", "--format", "json") == []


def test_metrics_never_cross_workspaces(loaded: Cli) -> None:
    result = loaded.json("metrics", "--workspace", "ws2", "--format", "json")
    assert [(r["key"], r["opened"], r["closed"]) for r in result["rows"]] == [
        ("2026-11-25", 1, 0)]


# --------------------------------------------------------------- conversations
def test_conversations_json_rows(loaded: Cli) -> None:
    rows = loaded.json("conversations", "--workspace", "ws1", "--format", "json")
    assert all(list(row) == ROW_FIELDS for row in rows)
    assert [r["contact_id"] for r in rows] == ["c3", "c1", "c2"]
    c3, c1, c2 = rows
    assert c3 | {"conversation_id": None} == {
        "conversation_id": None, "workspace_id": "ws1", "contact_id": "c3", "channel": "sms",
        "status": "open", "opened_at": "2026-11-24T05:30:00Z", "closed_at": None,
        "opened_by": "contact", "closed_by": None, "closed_by_actor": None,
        "assignee_id": None, "team_id": None, "category": None, "summary": None,
        "resolution_seconds": None, "messages_received": 1, "messages_sent": 0,
        "first_message_at": "2026-11-24T05:30:00Z", "first_response_at": None,
        "first_responder_id": None, "first_response_seconds": None,
        "first_response_business_seconds": None, "resolution_business_seconds": None,
        "last_activity_at": "2026-11-24T05:30:00Z", "recontact": False}
    assert c1 | {"conversation_id": None} == {
        "conversation_id": None, "workspace_id": "ws1", "contact_id": "c1",
        "channel": "whatsapp", "status": "closed", "opened_at": "2026-11-24T09:00:00Z",
        "closed_at": "2026-11-24T09:01:00Z", "opened_by": "contact", "closed_by": "user",
        "closed_by_actor": "u1", "assignee_id": None, "team_id": None, "category": "billing",
        "summary": "refund sent", "resolution_seconds": 60.0, "messages_received": 1,
        "messages_sent": 0, "first_message_at": "2026-11-24T09:00:00Z",
        "first_response_at": None, "first_responder_id": None, "first_response_seconds": None,
        "first_response_business_seconds": None, "resolution_business_seconds": 60.0,
        "last_activity_at": "2026-11-24T09:00:00Z", "recontact": False}
    assert (c2["channel"], c2["closed_by"], c2["closed_by_actor"], c2["assignee_id"],
            c2["team_id"], c2["resolution_seconds"]) == (
        "facebook", "automation", "rule-5", "ann", "t1", 120.0)
    assert len({r["conversation_id"] for r in rows}) == 3
    assert all(isinstance(r["conversation_id"], str) and r["conversation_id"] for r in rows)


def test_conversations_filters(loaded: Cli) -> None:
    def contacts(*args: str) -> list[str]:
        rows = loaded.json("conversations", "--workspace", "ws1", "--format", "json", *args)
        return [r["contact_id"] for r in rows]

    assert contacts("--status", "open") == ["c3"]
    assert contacts("--status", "closed") == ["c1", "c2"]
    assert contacts("--contact", "c2") == ["c2"]
    assert contacts("--contact", "c2", "--status", "open") == []
    assert contacts("--contact", "c4") == []


def test_conversations_sorted_by_opened_at_then_contact(cli: Cli) -> None:
    at = "2026-11-24T10:00:00Z"
    lines = [envelope("z", "message.received", "zed", at, channel={"type": "sms"}),
             envelope("a", "message.received", "amy", at, channel={"type": "sms"}),
             envelope("m", "message.received", "mia", "2026-11-24T09:59:59.999Z",
                      channel={"type": "sms"})]
    cli.ok("import", "-", stdin="\n".join(lines))
    rows = cli.json("conversations", "--workspace", "ws1", "--format", "json")
    assert [(r["opened_at"], r["contact_id"]) for r in rows] == [
        ("2026-11-24T09:59:59.999000Z", "mia"), (at, "amy"), (at, "zed")]


def test_conversations_csv_and_table(loaded: Cli) -> None:
    records = list(csv.DictReader(io.StringIO(
        loaded.ok("conversations", "--workspace", "ws1", "--format", "csv"))))
    assert [r["contact_id"] for r in records] == ["c3", "c1", "c2"]
    assert set(ROW_FIELDS) <= set(records[0])
    cells = assert_aligned(loaded.ok("conversations", "--workspace", "ws1"))
    assert len(cells) == 5  # header, rule, three conversations


# ---------------------------------------------------------------------- replay
def test_replay_rebuilds_identical_read_models(cli: Cli) -> None:
    cli.ok("import", str(cli.write("events.jsonl", LINES)))
    queries = [("conversations", "--workspace", "ws1", "--format", "json"),
               ("conversations", "--workspace", "ws2", "--format", "json"),
               ("metrics", "--workspace", "ws1", "--format", "json"),
               ("metrics", "--workspace", "ws1", "--format", "json", "--group-by", "team")]
    before = [cli.json(*q) for q in queries]
    with sqlite3.connect(cli.db) as db:
        db.execute("DELETE FROM conversations")
    assert cli.json(*queries[0]) == []
    done = cli.run("replay")
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert [cli.json(*q) for q in queries] == before
    assert cli.run("replay").returncode == 0
    assert [cli.json(*q) for q in queries] == before
    assert cli.json("import", "-", stdin="\n".join(LINES)) == REIMPORT_SUMMARY


def test_replay_of_an_empty_database(cli: Cli) -> None:
    assert cli.run("replay").returncode == 1  # no database: replay creates none
    assert cli.json("import", "-", stdin="\n") == {
        "read": 0, "accepted": 0, "duplicate": 0, "rejected": {}, "invalid": 0}
    assert cli.json("replay")["replayed_events"] == 0
    assert cli.json("conversations", "--workspace", "ws1", "--format", "json") == []


def test_undecodable_or_unstorable_lines_are_invalid_not_a_crash(cli: Cli) -> None:
    path = cli.folder / "binary.jsonl"
    lone_surrogate = LINES[0].replace('"c1"', '"\\ud800"').replace('"e1"', '"e-s"')
    path.write_bytes(b'\xff\xfe{"event_id": "x"}\n' + lone_surrogate.encode() + b"\n"
                     + LINES[3].encode() + b"\n")
    assert cli.json("import", str(path)) == {"read": 3, "accepted": 1, "duplicate": 0,
                                             "rejected": {}, "invalid": 2}


# ---------------------------------------------------------------- database
def test_database_url_option_and_default_file(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if k != "BONYCHAT_DATABASE_URL"}
    done = cli.run("import", "-", stdin=LINES[0], env=env)
    assert done.returncode == 0, done.stderr
    assert (cli.folder / "bonychat.db").exists()
    other = cli.folder / "other.db"
    cli.ok("import", "-", "--database-url", str(other), stdin=LINES[3])
    rows = cli.json("conversations", "--workspace", "ws1", "--format", "json",
                    "--database-url", str(other))
    assert [r["contact_id"] for r in rows] == ["c2"]
    assert cli.run("conversations", "--workspace", "ws1").returncode == 1  # no cli.db
    before = cli.run("--database-url", str(other), "conversations", "--workspace", "ws1",
                     "--format", "json")
    assert before.returncode == 0, before.stderr
    assert [r["contact_id"] for r in json.loads(before.stdout)] == ["c2"]


# ------------------------------------------------------------- two processes
def received_lines(prefix: str, contacts: int, rounds: int) -> list[str]:
    return [envelope(f"{prefix}-{r}-{c}", "message.received", f"c{c}", "2026-11-24T10:00:00Z",
                     channel={"type": "sms"}) for r in range(rounds) for c in range(contacts)]


@pytest.mark.parametrize("fresh", [False, True])
def test_concurrent_imports_on_one_database(cli: Cli, fresh: bool) -> None:
    if not fresh:  # the database exists before both start
        assert cli.json("import", "-", stdin="")["read"] == 0
    env = dict(cli.env, BONYCHAT_BATCH_SIZE="25")
    files = [cli.write(f"{name}.jsonl", received_lines(name, 150, 2)) for name in "AB"]
    both = cli.write("both.jsonl", received_lines("A", 150, 2) + received_lines("B", 150, 2))
    runs = [subprocess.Popen([*bonychat_command(), "import", str(path), "--no-progress"],
                             cwd=cli.folder, env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) for path in [*files, both]]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert "Traceback" not in err
    summaries = [json.loads(out) for out, _ in outputs]
    assert sum(s["accepted"] for s in summaries) == 600
    assert sum(s["duplicate"] for s in summaries) == 600
    live = cli.json("conversations", "--workspace", "ws1", "--format", "json")
    assert sorted(r["contact_id"] for r in live) == sorted(f"c{c}" for c in range(150))
    assert {r["status"] for r in live} == {"open"}
    # three processes projected at once: the compare-and-set on the projection
    # position keeps live counts exact (four messages per contact, as replay says)
    assert {r["messages_received"] for r in live} == {4}
    cli.ok("replay")
    rows = cli.json("conversations", "--workspace", "ws1", "--format", "json")
    assert [r["conversation_id"] for r in rows] == [r["conversation_id"] for r in live]
    assert {r["messages_received"] for r in rows} == {4}


# ------------------------------------------------------------------ exit codes
@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["import"],
    ["metrics"],
    ["metrics", "--group-by", "day"],
    ["conversations"],
    ["metrics", "--workspace", "ws1", "--from", "2026-13-01"],
    ["metrics", "--workspace", "ws1", "--from", "24/11/2026"],
    ["metrics", "--workspace", "ws1", "--to", "2026-02-30"],
    ["metrics", "--workspace", "ws1", "--to", "tomorrow"],
    ["metrics", "--workspace", "ws1", "--tz", "Mars/Olympus_Mons"],
    ["metrics", "--workspace", "ws1", "--tz", "+05:30"],
    ["metrics", "--workspace", "ws1", "--tz", ""],
    ["metrics", "--workspace", "ws1", "--tz", "../../etc/passwd"],
    ["metrics", "--workspace", "ws1", "--group-by", "year"],
    ["metrics", "--workspace", "ws1", "--format", "xml"],
    ["conversations", "--workspace", "ws1", "--status", "pending"],
    ["conversations", "--workspace", "ws1", "--format", "yaml"],
])
def test_usage_errors_exit_2_with_one_line(cli: Cli, args: list[str]) -> None:
    assert_one_line_error(cli.run(*args), 2)


def test_unreadable_file_exits_1_with_one_line(cli: Cli) -> None:
    assert_one_line_error(cli.run("import", str(cli.folder / "missing.jsonl")), 1)
    assert_one_line_error(cli.run("import", str(cli.folder)), 1)


@pytest.mark.parametrize("args", [
    ["import", "-"],
    ["metrics", "--workspace", "ws1"],
    ["conversations", "--workspace", "ws1"],
    ["replay"],
])
def test_database_in_a_missing_folder_exits_1_with_one_line(cli: Cli, args: list[str]) -> None:
    env = dict(cli.env, BONYCHAT_DATABASE_URL=str(cli.folder / "no" / "such" / "x.db"))
    done = cli.run(*args, stdin=LINES[0], env=env)
    assert_one_line_error(done, 1)
    assert not (cli.folder / "no").exists()


def test_a_utf8_bom_at_the_start_of_the_file_is_not_content(tmp_path: Path) -> None:
    line = ('{"event_id":"b1","type":"message.received","workspace_id":"ws1",'
            '"contact_id":"c1","occurred_at":"2026-11-24T10:00:00Z",'
            '"channel":{"type":"webchat"}}\n')
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + line.encode())
    done = subprocess.run([*bonychat_command(), "import", str(path), "--no-progress"],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "BONYCHAT_DATABASE_URL": str(tmp_path / "b.db")})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accepted"] == 1
