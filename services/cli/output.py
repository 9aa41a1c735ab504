"""Rendering of metrics and conversation rows as table, JSON or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import orjson

from services.projections.domain.rows import ROW_FIELDS

STAT_KEYS = ("count", "avg", "p50", "p90", "min", "max")
#: the statistics CONTRACT §6.6 adds, in CSV column order, with their column prefix
SERVICE_LEVEL_STATS = (("first_response_seconds", "first_response"),
                       ("first_response_business_seconds", "first_response_business"),
                       ("resolution_business_seconds", "resolution_business"))
METRIC_CSV_HEADER = ("key", "opened", "closed", *(f"resolution_{k}" for k in STAT_KEYS),
                     *(f"{prefix}_{k}" for _, prefix in SERVICE_LEVEL_STATS for k in STAT_KEYS),
                     "recontacts")
TABLE_CONVERSATION_COLUMNS = (
    ("conversation_id", "CONVERSATION"), ("contact_id", "CONTACT"), ("channel", "CHANNEL"),
    ("status", "STATUS"), ("opened_at", "OPENED AT"), ("closed_at", "CLOSED AT"),
    ("opened_by", "OPENED BY"), ("closed_by", "CLOSED BY"), ("assignee_id", "ASSIGNEE"),
    ("team_id", "TEAM"), ("resolution_seconds", "RESOLUTION"), ("messages_received", "IN"),
    ("messages_sent", "OUT"), ("first_response_seconds", "FIRST RESPONSE"),
    ("recontact", "RECONTACT"),
)


def to_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def duration(seconds: float | None) -> str:
    """Seconds as a short human duration: ``45s``, ``1m30s``, ``2h05m``, ``3d04h``."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds != whole else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]],
          footer: Sequence[str] | None = None) -> str:
    """Aligned plain-text table; numbers right-aligned, text left-aligned."""
    every = [list(headers), *[list(r) for r in rows], *([list(footer)] if footer else [])]
    widths = [max(len(r[i]) for r in every) for i in range(len(headers))]
    numeric = [all(_is_number(r[i]) for r in rows) and bool(rows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w)
                 for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    if footer:
        out += ["  ".join("-" * w for w in widths), line(footer)]
    return "\n".join(out)


def _is_number(text: str) -> bool:
    return text == "-" or text.replace(".", "", 1).isdigit() or text[:1].isdigit()


def _metric_cells(row: dict[str, Any], key: str) -> list[str]:
    stats = row["resolution_seconds"]
    opened = "-" if row["opened"] is None else str(row["opened"])
    first = row["first_response_seconds"]
    return [key, opened, str(row["closed"]), str(stats["count"]),
            *(duration(stats[k]) for k in ("avg", "p50", "p90", "min", "max")),
            str(first["count"]), duration(first["avg"]), duration(first["p90"]),
            duration(row["first_response_business_seconds"]["avg"]),
            duration(row["resolution_business_seconds"]["avg"]),
            "-" if row["recontacts"] is None else str(row["recontacts"])]


def render_metrics(result: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return to_json(result)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(METRIC_CSV_HEADER)
        for row in result["rows"]:
            stats = row["resolution_seconds"]
            writer.writerow([row["key"], _blank(row["opened"]), row["closed"],
                             *(_blank(stats[k]) for k in STAT_KEYS),
                             *(_blank(row[name][k]) for name, _ in SERVICE_LEVEL_STATS
                               for k in STAT_KEYS),
                             _blank(row["recontacts"])])
        return buffer.getvalue().rstrip("\n")
    headers = [result["group_by"].upper(), "OPENED", "CLOSED", "RESOLVED", "AVG", "P50", "P90",
               "MIN", "MAX", "RESPONDED", "FIRST AVG", "FIRST P90", "FIRST BH AVG",
               "RES BH AVG", "RECONTACTS"]
    rows = [_metric_cells(r, r["key"]) for r in result["rows"]]
    footer = _metric_cells(result["total"], "TOTAL")
    title = (f"workspace {result['workspace_id']} · by {result['group_by']} · tz {result['tz']}"
             f" · {date_window(result['from'], result['to'])}")
    if not rows:
        return f"{title}\n(no conversations in this range)"
    return f"{title}\n{table(headers, rows, footer)}"


def date_window(date_from: str | None, date_to: str | None) -> str:
    """The date range of a metrics title in words."""
    if date_from and date_to:
        return f"{date_from} to {date_to}"
    if date_from:
        return f"from {date_from} on"
    if date_to:
        return f"up to {date_to}"
    return "all dates"


def _blank(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def render_conversations(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return to_json(rows)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(ROW_FIELDS)
        for row in rows:
            writer.writerow([_blank(row[f]) for f in ROW_FIELDS])
        return buffer.getvalue().rstrip("\n")
    if not rows:
        return "(no conversations)"
    cells = [[_conversation_cell(row, key) for key, _ in TABLE_CONVERSATION_COLUMNS]
             for row in rows]
    return table([title for _, title in TABLE_CONVERSATION_COLUMNS], cells)


def _conversation_cell(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if key in ("resolution_seconds", "first_response_seconds"):
        return duration(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "-" if value is None else str(value)
