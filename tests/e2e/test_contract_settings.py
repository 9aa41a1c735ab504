"""Acceptance of CONTRACT §6.1 (workspace settings), §6.3 (business hours) and §6.4
(auto-close after inactivity): HTTP on the shared server, the CLI on its own file.
Stories: ``settings_stories`` in ``contract_scenarios.py``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Contract, admin_token, analytics_token, gateway_token
from .contract_client import ok_json, run, run_many
from .contract_scenarios import at, settings_stories, weekdays
from .test_contract_metrics import NULL, STAT_KEYS, one, rounded, stats

pytestmark = pytest.mark.e2e

DEFAULTS = {"timezone": "UTC", "business_hours": None, "inactivity_timeout_seconds": None}


def settings_of(contract: Contract, ws: str, token: str | None = None) -> Any:
    return contract.server.get_json(f"/v1/workspaces/{ws}/settings",
                                    token or analytics_token(ws))


def put(contract: Contract, ws: str, body: Any, token: str | None = None) -> Any:
    return contract.server.request("PUT", f"/v1/workspaces/{ws}/settings",
                                   token or admin_token(ws), body)


def flat(statistics: dict[str, Any]) -> dict[str, Any]:
    return {k: rounded(statistics[k]) for k in STAT_KEYS}


def test_settings_get_fills_in_defaults_for_analytics_and_admin_tokens(
        contract: Contract) -> None:
    assert settings_of(contract, "s-tz") == {**DEFAULTS, "timezone": "Europe/Berlin"}
    assert settings_of(contract, "s-tz", admin_token("s-tz")) == settings_of(contract, "s-tz")


def test_settings_need_the_right_token(contract: Contract) -> None:
    path = "/v1/workspaces/s-put/settings"
    request = contract.server.request
    assert request("GET", path, None).status == 401
    assert request("GET", path, gateway_token("h-post")).status in (401, 403)
    assert request("GET", path, analytics_token("s-tz")).status == 403
    for token in (None, analytics_token("s-put"), admin_token("s-tz")):
        assert request("PUT", path, token, {"timezone": "Asia/Tokyo"}).status in (401, 403)
    assert settings_of(contract, "s-put")["timezone"] != "Asia/Tokyo"


def test_settings_put_replaces_the_given_keys_and_null_resets_one(contract: Contract) -> None:
    hours = [{"day": "sat", "start": "10:00", "end": "24:00"}]
    for body, expected in [
        ({"timezone": "America/New_York", "business_hours": None,
          "inactivity_timeout_seconds": None}, {**DEFAULTS, "timezone": "America/New_York"}),
        ({"inactivity_timeout_seconds": 60}, {**DEFAULTS, "timezone": "America/New_York",
                                              "inactivity_timeout_seconds": 60}),
        ({"business_hours": hours, "timezone": None},
         {**DEFAULTS, "business_hours": hours, "inactivity_timeout_seconds": 60}),
        ({"inactivity_timeout_seconds": None, "business_hours": None}, DEFAULTS),
    ]:
        reply = put(contract, "s-put", body)
        assert reply.status == 200, (body, reply.body)
        assert settings_of(contract, "s-put") == expected


@pytest.mark.parametrize("body", [
    {"timezone": "Mars/Olympus"}, {"inactivity_timeout_seconds": 59},
    {"inactivity_timeout_seconds": "3600"}, {"inactivity_timeout_seconds": 90.5},
    {"inactivity_timeout_seconds": True},
    {"business_hours": [{"day": "monday", "start": "09:00", "end": "10:00"}]},
    {"business_hours": [{"day": "mon", "start": "24:00", "end": "24:00"}]},
    {"business_hours": [{"day": "mon", "start": "10:00", "end": "09:00"}]},
    {"business_hours": [{"day": "mon", "start": "10:00", "end": "10:00"}]},
    {"business_hours": [{"day": "xyz", "start": "09:00", "end": "10:00"}]},
    {"business_hours": [{"day": "mon", "start": "9:00", "end": "10:00"}]},
    {"business_hours": [{"day": "mon", "start": "09:00", "end": "12:00"},
                        {"day": "mon", "start": "11:00", "end": "13:00"}]},
    [1, 2],
])
def test_invalid_settings_are_400_with_the_reason_and_change_nothing(
        contract: Contract, body: Any) -> None:
    before = settings_of(contract, "s-bh")
    reply = put(contract, "s-bh", body)
    assert reply.status == 400, (body, reply.status)
    assert reply.json().get("detail") or reply.json().get("error")
    assert settings_of(contract, "s-bh") == before


def test_metrics_default_to_the_workspace_timezone(contract: Contract) -> None:
    body = contract.metrics("s-tz")
    assert (body["tz"], [r["key"] for r in body["rows"]]) == ("Europe/Berlin", ["2026-11-25"])
    body = contract.metrics("s-tz", tz="UTC")
    assert (body["tz"], [r["key"] for r in body["rows"]]) == ("UTC", ["2026-11-24"])


def test_business_seconds_are_the_part_inside_the_schedule_dst_correct(
        contract: Contract) -> None:
    rows = contract.conversations("s-bh")
    assert [(r["contact_id"], r["resolution_seconds"], r["resolution_business_seconds"],
             r["first_response_seconds"], r["first_response_business_seconds"])
            for r in rows] == [
        ("c3", 82800, 82800, None, None), ("c4", 90000, 90000, None, None),
        ("c1", 36000, 28800, 5400, 1800), ("c2", 237600, 93600, None, None)]
    total = contract.metrics("s-bh")["total"]
    assert flat(total["resolution_seconds"]) == stats(
        4, 111600.0, 86400.0, 193320.0, 36000.0, 237600.0)
    assert flat(total["resolution_business_seconds"]) == stats(
        4, 73800.0, 86400.0, 92520.0, 28800.0, 93600.0)
    assert flat(total["first_response_seconds"]) == one(5400.0)
    assert flat(total["first_response_business_seconds"]) == one(1800.0)


def test_business_seconds_use_the_schedule_in_force_at_query_time(contract: Contract) -> None:
    def business() -> tuple[Any, Any]:
        [row] = contract.conversations("s-bh2")
        total = contract.metrics("s-bh2")["total"]["resolution_business_seconds"]
        return row["resolution_business_seconds"], rounded(total["avg"])

    assert business() == (3600, 3600.0)
    assert put(contract, "s-bh2", {"business_hours": None}).status == 200
    try:
        assert business() == (10800, 10800.0)
    finally:
        assert put(contract, "s-bh2", {
            "business_hours": weekdays("10:00", "11:00", "tue")}).status == 200
    assert business() == (3600, 3600.0)


def test_serve_sweeps_at_least_once_a_minute_with_the_wall_clock(contract: Contract) -> None:
    deadline = time.monotonic() + 75
    while True:
        [row] = contract.conversations("s-sweep")
        if row["status"] == "closed" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (row["closed_at"], row["closed_by"], row["closed_by_actor"]) == (
        at("10:01"), "inactivity", None)


def test_inactivity_closes_at_last_activity_plus_timeout_before_the_next_event(
        contract: Contract) -> None:
    swept = run(["close-inactive", "--workspace", "s-idle", "--now", "2026-11-24T13:00:00Z"],
                db=contract.db)
    # c3, c8 and c6's second one; fewer if bonychat serve's own sweep came first
    assert ok_json(swept)["closed"] in (0, 1, 2, 3)
    rows = contract.conversations("s-idle")
    assert [(r["contact_id"], r["opened_at"], r["closed_at"], r["closed_by"],
             r["closed_by_actor"], r["last_activity_at"], r["recontact"]) for r in rows] == [
        ("c1", at("10:00"), at("11:30"), "inactivity", None, at("10:30"), False),
        ("c2", at("10:00"), at("11:00"), "inactivity", None, at("10:00"), False),
        ("c3", at("10:00"), at("11:59:59"), "inactivity", None, at("10:59:59"), False),
        ("c4", at("10:00"), at("11:00"), "inactivity", None, at("10:00"), False),
        ("c5", at("10:00"), at("11:00"), "inactivity", None, at("10:00"), False),
        ("c6", at("10:00"), at("11:00"), "inactivity", None, at("10:00"), False),
        ("c7", at("10:00"), at("11:00"), "inactivity", None, at("10:00"), False),
        ("c8", at("10:00"), at("12:29:59"), "inactivity", None, at("11:29:59"), False),
        ("c6", at("11:00"), at("12:00"), "inactivity", None, at("11:00"), True),
        ("c1", at("11:30"), at("12:00"), "user", "u1", at("11:30"), True)]
    assert rows[-2]["channel"] == "viber" and rows[-2]["opened_by"] == "user"
    assert [(r["messages_sent"], r["first_response_at"]) for r in rows[6:8]] == [
        (0, None), (1, None)]


def test_inactivity_closings_count_as_closed_but_not_in_resolution(contract: Contract) -> None:
    run(["close-inactive", "--workspace", "s-idle", "--now", "2026-11-24T13:00:00Z"],
        db=contract.db)
    body = contract.metrics("s-idle", group_by="closed_by")
    assert [(r["key"], r["closed"], flat(r["resolution_seconds"])) for r in body["rows"]] == [
        ("inactivity", 9, NULL), ("user", 1, one(1800.0))]
    assert (body["total"]["opened"], body["total"]["closed"], body["total"]["recontacts"]) == (
        10, 10, 2)


def test_cli_workspace_set_show_and_import_closes_only_what_events_expire(
        tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    idle = next(s for s in settings_stories() if s.ws == "s-idle")
    run(["import", "-"], db=db, stdin="")
    shown = run(["workspace", "show", "--workspace", "s-idle", "--format", "json"], db=db)
    assert ok_json(shown) == DEFAULTS
    assert run(["workspace", "set", "--workspace", "s-idle", "--auto-close-after", "60m",
                "--timezone", "Europe/Berlin", "--business-hours",
                "mon-fri 09:00-18:00, sat 10:00-14:00"], db=db).returncode == 0
    assert ok_json(run(["import", "-"], db=db, stdin="\n".join(idle.lines) + "\n")) == {
        "read": 19, "accepted": 17, "duplicate": 1,
        "rejected": {"no_open_conversation": 1}, "invalid": 0}
    shown, rows, early = run_many([
        ["workspace", "show", "--workspace", "s-idle", "--format", "json"],
        ["conversations", "--workspace", "s-idle", "--status", "open", "--format", "json"],
        ["close-inactive", "--workspace", "s-idle", "--now", "2026-11-24T11:59:58Z"]], db=db)
    assert ok_json(shown) == {"timezone": "Europe/Berlin", "inactivity_timeout_seconds": 3600,
                              "business_hours": [*weekdays("09:00", "18:00"), {
                                  "day": "sat", "start": "10:00", "end": "14:00"}]}
    assert [r["contact_id"] for r in ok_json(rows)] == ["c3", "c8", "c6"]  # import: no sweep
    assert ok_json(early) == {"closed": 0}
    assert ok_json(run(["close-inactive", "--now", "2026-11-24T11:59:59Z"], db=db)) == {
        "closed": 1}
    [row] = ok_json(run(["conversations", "--workspace", "s-idle", "--contact", "c3",
                         "--format", "json"], db=db))
    assert (row["closed_at"], row["closed_by"]) == (at("11:59:59"), "inactivity")
    before = run(["conversations", "--workspace", "s-idle", "--format", "json"], db=db)
    assert run(["replay", "--no-progress"], db=db).returncode == 0
    after = run(["conversations", "--workspace", "s-idle", "--format", "json"], db=db)
    assert ok_json(after) == ok_json(before)


BAD_FLAGS = [["--timezone", "Mars/Olympus"], ["--business-hours", "mon-fri 18:00-09:00"],
             ["--auto-close-after", "59"]]


def test_cli_bad_settings_exit_2_with_one_line(tmp_path: Path) -> None:
    results = run_many([["workspace", "set", "--workspace", "ws1", *flags]
                        for flags in BAD_FLAGS], db=tmp_path / "x.db")
    wrong = [(r.args[-2:], r.returncode, r.stderr) for r in results
             if r.returncode != 2 or len(r.stderr.strip().splitlines()) != 1
             or "Traceback" in r.stderr]
    assert not wrong
