"""``bonychat workspace``, ``close-inactive`` and the §6 fields, as a user drives them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_cli import Cli, envelope

STORY = [
    # c1: asks at 10:00, a bot answers, a human answers at 10:05, closed 11:00
    envelope("s1", "message.received", "c1", "2026-11-24T10:00:00Z", channel={"type": "sms"}),
    envelope("s2", "message.sent", "c1", "2026-11-24T10:01:00Z", actor={"type": "automation"}),
    envelope("s3", "message.sent", "c1", "2026-11-24T10:05:00Z",
             actor={"type": "user", "id": "ann"}),
    envelope("s4", "conversation.close", "c1", "2026-11-24T11:00:00Z", actor={"type": "user"}),
    # c1 again 2 h later: a re-contact, then silence
    envelope("s5", "message.received", "c1", "2026-11-24T13:00:00Z", channel={"type": "sms"}),
]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_workspace_set_and_show(cli: Cli) -> None:
    missing = cli.run("workspace", "show", "--workspace", "ws1")
    assert missing.returncode == 1  # read-only: never creates a store
    assert not cli.db.exists()
    cli.ok("import", "-", stdin="")
    assert cli.json("workspace", "show", "--workspace", "ws1", "--format", "json") == {
        "timezone": "UTC", "business_hours": None, "inactivity_timeout_seconds": None}
    cli.ok("workspace", "set", "--workspace", "ws1", "--timezone", "Europe/Berlin",
           "--business-hours", "mon-fri 09:00-18:00", "--auto-close-after", "90m")
    shown = cli.json("workspace", "show", "--workspace", "ws1", "--format", "json")
    assert shown["timezone"] == "Europe/Berlin"
    assert shown["inactivity_timeout_seconds"] == 5400
    assert len(shown["business_hours"]) == 5
    assert shown["business_hours"][0] == {"day": "mon", "start": "09:00", "end": "18:00"}
    cli.ok("workspace", "set", "--workspace", "ws1", "--auto-close-after", "off",
           "--business-hours", "none")
    shown = cli.json("workspace", "show", "--workspace", "ws1", "--format", "json")
    assert shown == {"timezone": "Europe/Berlin", "business_hours": None,
                     "inactivity_timeout_seconds": None}
    assert "Europe/Berlin" in cli.ok("workspace", "show", "--workspace", "ws1")
    assert cli.json("workspace", "show", "--workspace", "ws2", "--format", "json")[
        "timezone"] == "UTC"


@pytest.mark.parametrize("flags", [
    ("--timezone", "Mars/Olympus"), ("--business-hours", "mon 25:00-26:00"),
    ("--business-hours", "xyz 09:00-10:00"), ("--business-hours", "mon 10:00-09:00"),
    ("--business-hours", "mon 09:00-12:00, mon 11:00-13:00"), ("--auto-close-after", "59"),
    ("--auto-close-after", "soon"),
])
def test_bad_settings_exit_2_with_one_line_and_store_nothing(cli: Cli,
                                                             flags: tuple[str, str]) -> None:
    cli.ok("workspace", "set", "--workspace", "ws1", "--timezone", "Asia/Tokyo")
    done = cli.run("workspace", "set", "--workspace", "ws1", *flags)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert cli.json("workspace", "show", "--workspace", "ws1", "--format", "json") == {
        "timezone": "Asia/Tokyo", "business_hours": None, "inactivity_timeout_seconds": None}


def test_first_response_recontact_and_auto_close_through_the_cli(cli: Cli) -> None:
    cli.ok("workspace", "set", "--workspace", "ws1", "--auto-close-after", "1h")
    cli.ok("import", "-", stdin="\n".join(STORY))
    rows = cli.json("conversations", "--workspace", "ws1", "--format", "json")
    first, second = rows
    assert (first["first_message_at"], first["first_response_at"],
            first["first_responder_id"], first["first_response_seconds"]) == (
        "2026-11-24T10:00:00Z", "2026-11-24T10:05:00Z", "ann", 300.0)
    assert first["last_activity_at"] == "2026-11-24T10:05:00Z"
    assert first["closed_by"] == "user" and first["recontact"] is False
    assert second["recontact"] is True and second["status"] == "open"
    # import closes only what imported events expire: nothing came after 13:00
    assert cli.json("close-inactive", "--workspace", "ws1",
                    "--now", "2026-11-24T13:59:59Z") == {"closed": 0}
    assert cli.json("close-inactive", "--now", "2026-11-25T00:00:00Z") == {"closed": 1}
    assert cli.json("close-inactive", "--now", "2026-11-25T00:00:00Z") == {"closed": 0}
    closed = cli.json("conversations", "--workspace", "ws1", "--format", "json")[1]
    assert (closed["closed_by"], closed["closed_at"], closed["closed_by_actor"]) == (
        "inactivity", "2026-11-24T14:00:00Z", None)
    metrics = cli.json("metrics", "--workspace", "ws1", "--format", "json")
    total = metrics["total"]
    assert (total["opened"], total["closed"], total["recontacts"]) == (2, 2, 1)
    assert total["resolution_seconds"]["count"] == 1  # inactivity closings not counted
    assert total["first_response_seconds"]["avg"] == 300.0


def test_metrics_default_to_the_workspace_zone_and_business_hours(cli: Cli) -> None:
    cli.ok("import", "-", stdin="\n".join(STORY[:4]))
    cli.ok("workspace", "set", "--workspace", "ws1", "--timezone", "America/New_York",
           "--business-hours", "mon-fri 05:02-06:00")
    result = cli.json("metrics", "--workspace", "ws1", "--format", "json")
    assert result["tz"] == "America/New_York"
    total = result["total"]
    # 10:00-10:05 UTC is 05:00-05:05 in New York: 3 minutes inside 05:02-06:00
    assert total["first_response_business_seconds"]["avg"] == 180.0
    assert total["resolution_business_seconds"]["avg"] == 58 * 60.0
    assert cli.json("metrics", "--workspace", "ws1", "--format", "json", "--tz", "UTC")[
        "tz"] == "UTC"
    row = cli.json("conversations", "--workspace", "ws1", "--format", "json")[0]
    assert row["first_response_business_seconds"] == 180.0
    assert row["resolution_business_seconds"] == 3480.0
    csv_head = cli.ok("metrics", "--workspace", "ws1", "--format", "csv").splitlines()[0]
    assert csv_head.endswith("resolution_business_min,resolution_business_max,recontacts")
    assert "first_response_avg" in csv_head and "first_response_business_p50" in csv_head


def test_close_inactive_rejects_a_time_without_offset(cli: Cli) -> None:
    cli.ok("import", "-", stdin="")
    done = cli.run("close-inactive", "--now", "2026-11-24T10:00:00")
    assert done.returncode == 2 and "offset" in done.stderr
    assert json.loads(cli.ok("close-inactive", "--now", "2026-11-24T10:00:00Z")) == {
        "closed": 0}
