"""Acceptance of CONTRACT §6.2 (first response), §6.5 (re-contacts) and §6.6 (where
they appear) for workspaces without settings: business durations then equal the
calendar ones, and metrics use UTC. Stories: ``service_level_stories``."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from .conftest import Contract
from .contract_client import run
from .test_contract_metrics import NULL, STAT_KEYS, one, rounded, stats

pytestmark = pytest.mark.e2e

T = "2026-11-24T"
SLA_ROW_FIELDS = ["first_message_at", "first_response_at", "first_responder_id",
                  "first_response_seconds", "first_response_business_seconds",
                  "resolution_business_seconds", "last_activity_at", "recontact"]
SLA_STATS = ["first_response_seconds", "first_response_business_seconds",
             "resolution_business_seconds"]


def sla_row(line: dict[str, Any]) -> tuple[Any, ...]:
    """key, opened, closed, resolution, first response, recontacts; checks that the
    business statistics equal the calendar ones (no schedule)."""
    flat = {name: {k: rounded(line[name][k]) for k in STAT_KEYS}
            for name in ["resolution_seconds", *SLA_STATS]}
    assert flat["first_response_business_seconds"] == flat["first_response_seconds"]
    assert flat["resolution_business_seconds"] == flat["resolution_seconds"]
    return (line["key"], line["opened"], line["closed"], flat["resolution_seconds"],
            flat["first_response_seconds"], line["recontacts"])


def sla_rows(contract: Contract, ws: str, **params: str) -> list[tuple[Any, ...]]:
    body = contract.metrics(ws, **params)
    return [sla_row(r) for r in [*body["rows"], body["total"]]]


def test_conversation_rows_gain_the_service_level_fields_in_order(contract: Contract) -> None:
    rows = contract.conversations("s-first")
    assert all(list(r)[17:] == SLA_ROW_FIELDS for r in rows)
    for r in rows:
        assert r["first_response_business_seconds"] == r["first_response_seconds"]
        assert r["resolution_business_seconds"] == r["resolution_seconds"]


def test_first_response_is_the_first_human_reply_after_the_first_message(
        contract: Contract) -> None:
    rows = contract.conversations("s-first")
    assert [(r["contact_id"], r["first_message_at"], r["first_response_at"],
             r["first_responder_id"], r["first_response_seconds"], r["last_activity_at"])
            for r in rows] == [
        ("c6", "2026-11-22T23:59:00Z", "2026-11-23T00:01:00Z", "u1", 120,
         "2026-11-23T00:01:00Z"),
        ("c1", T + "10:00:00Z", T + "10:05:00Z", "u7", 300, T + "10:06:00Z"),
        ("c2", T + "10:03:00Z", T + "10:04:00Z", "u2", 60, T + "10:04:00Z"),
        ("c3", T + "10:00:00Z", T + "09:58:00Z", "u1", 0, T + "10:00:00Z"),
        ("c4", None, None, None, None, T + "10:01:00Z"),
        ("c5", T + "10:00:00Z", None, None, None, T + "10:00:00Z")]


def test_first_response_statistics_by_first_response_day(contract: Contract) -> None:
    assert sla_rows(contract, "s-first") == [
        ("2026-11-22", 1, 0, NULL, NULL, 0),
        ("2026-11-23", 0, 0, NULL, one(120.0), 0),
        ("2026-11-24", 5, 1, one(600.0), stats(3, 120.0, 60.0, 252.0, 0.0, 300.0), 0),
        (None, 6, 1, one(600.0), stats(4, 120.0, 90.0, 246.0, 0.0, 300.0), 0)]
    assert sla_rows(contract, "s-first", **{"from": "2026-11-23", "to": "2026-11-23"}) == [
        ("2026-11-23", 0, 0, NULL, one(120.0), 0), (None, 0, 0, NULL, one(120.0), 0)]


def test_dimension_rows_use_current_assignee_while_open_and_closed_by_only_closed(
        contract: Contract) -> None:
    assert sla_rows(contract, "s-first", group_by="assignee") == [
        ("unassigned", None, 1, one(600.0), stats(3, 140.0, 120.0, 264.0, 0.0, 300.0), None),
        ("zed", None, 0, NULL, one(60.0), None),
        (None, 6, 1, one(600.0), stats(4, 120.0, 90.0, 246.0, 0.0, 300.0), 0)]
    assert sla_rows(contract, "s-first", group_by="closed_by") == [
        ("user", None, 1, one(600.0), one(300.0), None),
        (None, 6, 1, one(600.0), stats(4, 120.0, 90.0, 246.0, 0.0, 300.0), 0)]


def test_recontact_within_24_hours_of_a_non_merge_closing_of_the_survivor(
        contract: Contract) -> None:
    rows = contract.conversations("s-recontact")
    assert [(r["contact_id"], r["opened_at"], r["recontact"]) for r in rows] == [
        ("c9", "2026-11-23T10:00:00Z", False), ("c9", "2026-11-23T11:00:00Z", False),
        ("c1", T + "10:00:00Z", False), ("c3", T + "10:00:00Z", False),
        ("c4", T + "10:00:00Z", False), ("R", T + "10:03:00Z", True),
        ("Q", T + "10:06:00Z", False), ("Q", T + "10:08:00Z", True),
        ("c1", "2026-11-25T10:09:59Z", True), ("c1", "2026-11-26T11:00:00Z", False)]


def test_recontacts_are_counted_like_opened(contract: Contract) -> None:
    assert sla_rows(contract, "s-recontact", **{"from": "2026-11-24"}) == [
        ("2026-11-24", 6, 4, stats(3, 240.0, 60.0, 492.0, 60.0, 600.0), NULL, 2),
        ("2026-11-25", 1, 1, one(601.0), NULL, 1),
        ("2026-11-26", 1, 0, NULL, NULL, 0),
        (None, 8, 5, stats(4, 330.25, 330.0, 600.7, 60.0, 601.0), NULL, 3)]
    closed_by = sla_rows(contract, "s-recontact", group_by="closed_by", **{"from": "2026-11-24"})
    assert [(r[0], r[1], r[2], r[5]) for r in closed_by] == [
        ("merge", None, 1, None), ("user", None, 4, None), (None, 8, 5, 3)]


def test_metrics_csv_flattens_the_new_statistics_after_the_existing_columns(
        contract: Contract) -> None:
    result = run(["metrics", "--workspace", "s-first", "--format", "csv"], db=contract.db)
    assert result.returncode == 0, result.stderr
    header, *lines = list(csv.reader(io.StringIO(result.stdout)))
    flattened = [f"{prefix}_{stat}" for prefix in
                 ("resolution", "first_response", "first_response_business",
                  "resolution_business") for stat in STAT_KEYS]
    assert header == ["key", "opened", "closed", *flattened, "recontacts"]
    assert lines[1] == ["2026-11-23", "0", "0", "0", "", "", "", "", "",
                        "1", "120.0", "120.0", "120.0", "120.0", "120.0",
                        "1", "120.0", "120.0", "120.0", "120.0", "120.0",
                        "0", "", "", "", "", "", "0"]


def test_durations_are_seconds_rounded_to_3_decimals(contract: Contract) -> None:
    rows = contract.conversations("s-round")
    assert [(r["resolution_seconds"], r["first_response_seconds"]) for r in rows] == [
        (0.0, None), (0.877, 0.377)]
    total = contract.metrics("s-round")["total"]
    # exact values 0.0004 and 0.876544: avg 0.438272, p90 0.0004 + 0.9 * 0.876144
    assert total["resolution_seconds"] == stats(2, 0.438, 0.438, 0.789, 0.0, 0.877)
    assert total["first_response_seconds"] == one(0.377)
