"""The installed ``bonychat`` as a careful user finds it (issue 9, part 2).

Closed pipes, commands run where there is no database, the version and help,
the 1 MiB input limit and the metrics title, each driven through the console
script in a subprocess.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import tomllib
from datetime import date, timedelta
from pathlib import Path

import pytest

from .test_cli import LINES, Cli, assert_one_line_error, bonychat_command, envelope

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MIB = 1_048_576
CONTACTS = 3000  # enough rows that every format's output is far bigger than a pipe buffer


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """One conversation a day for CONTACTS days, each closed minutes later."""
    cli = Cli(tmp_path_factory.mktemp("many"))
    lines = []
    for n in range(CONTACTS):
        day = (date(2020, 1, 1) + timedelta(days=n)).isoformat()
        lines += [envelope(f"o{n}", "message.received", f"contact-{n:05d}", f"{day}T10:00:00Z",
                           channel={"type": "whatsapp"}),
                  envelope(f"x{n}", "conversation.close", f"contact-{n:05d}",
                           f"{day}T10:{1 + n % 50:02d}:{n % 60:02d}.{n % 997:03d}Z",
                           actor={"type": "user", "id": f"agent-{n % 7}"})]
    summary = cli.json("import", str(cli.write("many.jsonl", lines)), "--no-progress")
    assert summary["accepted"] == 2 * CONTACTS
    return cli


def piped(cli: Cli, args: list[str], reader: list[str]) -> tuple[int, str, str]:
    """``bonychat ARGS | READER``: bonychat's status and stderr, and what the reader printed."""
    writer = subprocess.Popen([*bonychat_command(), *args], cwd=cli.folder, env=cli.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(reader, stdin=writer.stdout, stdout=subprocess.PIPE)
    assert writer.stdout is not None and writer.stderr is not None
    writer.stdout.close()  # only the reader holds the pipe now
    shown, _ = head.communicate(timeout=120)
    errors = writer.stderr.read().decode()
    writer.stderr.close()
    return writer.wait(timeout=120), errors, shown.decode()


# ------------------------------------------------------------------ closed pipe
@pytest.mark.parametrize(("args", "reader", "first"), [
    (["conversations", "--workspace", "ws1"], ["head", "-1"], "CONVERSATION"),
    (["conversations", "--workspace", "ws1", "--format", "csv"], ["head", "-1"],
     "conversation_id,"),
    (["conversations", "--workspace", "ws1", "--format", "json"], ["head", "-c", "20"], "[{"),
    (["metrics", "--workspace", "ws1"], ["head", "-1"], "workspace ws1"),
    (["metrics", "--workspace", "ws1", "--format", "csv"], ["head", "-1"], "key,opened"),
])
def test_output_into_a_closed_pipe_ends_quietly_with_0(many: Cli, args: list[str],
                                                        reader: list[str], first: str) -> None:
    full = many.ok(*args)
    assert len(full.encode()) > 2 * 65_536  # the reader leaves long before the end
    status, errors, shown = piped(many, args, reader)
    assert shown.startswith(first) and full.startswith(shown)
    assert errors == ""
    assert status == 0


def test_the_whole_output_still_reaches_a_reader_that_reads_it_all(many: Cli) -> None:
    args = ["conversations", "--workspace", "ws1", "--format", "csv"]
    status, errors, shown = piped(many, args, ["cat"])
    assert (status, errors) == (0, "")
    assert len(shown.splitlines()) == CONTACTS + 1


# ---------------------------------------------------------------- no database
@pytest.mark.parametrize("args", [
    ["metrics", "--workspace", "ws1"],
    ["metrics", "--workspace", "ws1", "--format", "json"],
    ["conversations", "--workspace", "ws1", "--format", "csv"],
    ["replay"],
])
def test_commands_that_read_never_create_a_database(cli: Cli, args: list[str]) -> None:
    done = cli.run(*args)
    assert_one_line_error(done, 1)
    assert str(cli.db) in done.stderr and "bonychat import" in done.stderr
    assert done.stdout == ""
    assert sorted(p.name for p in cli.folder.iterdir()) == []
    default = {k: v for k, v in cli.env.items() if k != "BONYCHAT_DATABASE_URL"}
    here = cli.run(*args, env=default)
    assert_one_line_error(here, 1)
    assert str(cli.folder / "bonychat.db") in here.stderr
    other = cli.folder / "elsewhere.db"
    there = cli.run(*args, "--database-url", str(other))
    assert_one_line_error(there, 1)
    assert str(other) in there.stderr
    assert sorted(p.name for p in cli.folder.iterdir()) == []


def test_after_an_import_the_same_commands_work(cli: Cli) -> None:
    assert cli.run("conversations", "--workspace", "ws1").returncode == 1
    cli.ok("import", "-", stdin=LINES[0])
    assert len(cli.json("conversations", "--workspace", "ws1", "--format", "json")) == 1
    assert cli.json("replay")["replayed_events"] >= 1


# ----------------------------------------------------------- version and help
def test_version_prints_the_package_version(cli: Cli) -> None:
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    done = cli.run("--version")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.strip() == f"bonychat {expected}"


@pytest.mark.parametrize("command", ["import", "metrics", "conversations", "replay", "serve"])
def test_each_command_has_help(cli: Cli, command: str) -> None:
    done = cli.run(command, "--help")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"usage: bonychat {command}")
    assert "--database-url URL" in done.stdout and "SQLite file or postgresql" in done.stdout


def test_the_metrics_options_say_what_they_do(cli: Cli) -> None:
    text = " ".join(cli.ok("metrics", "--help").split())  # help texts wrap at the width
    for words in ("--workspace WS the workspace_id to read",
                  "--tz ZONE IANA time zone of the dates",
                  "--from DATE first local date counted",
                  "--to DATE last local date counted",
                  "one row per day (default), week or month"):
        assert words in text, words


# ----------------------------------------------------------------- 1 MiB lines
def line_of(size: int, event_id: str) -> str:
    base = envelope(event_id, "message.received", "c-big", "2026-11-24T10:00:00Z",
                    channel={"type": "sms"}, data={"text": ""})
    return base.replace('"text": ""', '"text": "' + "x" * (size - len(base)) + '"')


def test_a_line_over_one_mebibyte_is_invalid_with_its_size(cli: Cli) -> None:
    exact, over = line_of(MIB, "exact"), line_of(MIB + 1, "over")
    assert (len(exact.encode()), len(over.encode())) == (MIB, MIB + 1)
    path = cli.write("big.jsonl", [exact, over, LINES[3]])
    summary = cli.json("import", str(path), "--no-progress")
    assert summary == {"read": 3, "accepted": 2, "duplicate": 0, "rejected": {}, "invalid": 1}
    with sqlite3.connect(cli.db) as db:
        letters = db.execute("SELECT raw, reason FROM dead_letters").fetchall()
    assert len(letters) == 1
    raw, reason = letters[0]
    assert raw == over  # nothing is lost: the whole line is kept
    assert "1,048,577 bytes" in reason and "1,048,576" in reason
    rows = cli.json("conversations", "--workspace", "ws1", "--format", "json")
    assert sorted(r["contact_id"] for r in rows) == ["c-big", "c2"]


# ------------------------------------------------------------------ the title
def test_the_metrics_title_says_which_dates(many: Cli) -> None:
    def title(*args: str) -> str:
        return many.ok("metrics", "--workspace", "ws1", *args).splitlines()[0]

    assert title().endswith("· all dates")
    assert title("--from", "2020-02-01").endswith("· from 2020-02-01 on")
    assert title("--to", "2020-02-01").endswith("· up to 2020-02-01")
    assert title("--from", "2020-01-01", "--to", "2020-01-31").endswith(
        "· 2020-01-01 to 2020-01-31")
    assert "…" not in title()
    json_result = json.loads(many.ok("metrics", "--workspace", "ws1", "--format", "json"))
    assert (json_result["from"], json_result["to"]) == (None, None)
