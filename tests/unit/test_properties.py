"""Property tests of the lifecycle invariants (CONTRACT §2) and metrics (§3).

Random streams over a few workspaces and contacts (merges, invalid lines and
redeliveries included) go through the embedded pipeline on the in-memory fakes
and are checked against:

* a naive oracle written straight from the §2 table (outcomes and rows),
* the invariants: one open conversation per contact, idempotent reprocessing,
  batch-size independence, replay equals live,
* a naive metrics recomputation from the rows, written from the §3 text.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fakes import FakeEventStore, FakeReadModelStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.conversation.domain.contact import Contact, aggregate_id
from services.in_process.pipeline import EmbeddedPipeline, ImportSummary
from services.projections.application.projector import ConversationProjection
from services.projections.domain.metrics import MetricsQuery, _LocalDates, compute, to_us

PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORKSPACES = ("w1", "w2")
CONTACTS = ("a", "b", "c", "d")
CHANNELS = ("facebook", "viber", "whatsapp", "sms", "webchat")
OFFSETS = ("Z", "+00:00", "+05:30", "+05:45", "-04:00", "+13:00")
BASE = datetime(2026, 3, 6, 0, 0, tzinfo=UTC)  # spans the 2026-03-08 DST change in the US
ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu",
         "Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns", "Pacific/Kiritimati",
         "Pacific/Apia", "Europe/Dublin", "Africa/Casablanca", "Antarctica/Troll",
         "America/Sao_Paulo", "Pacific/Honolulu", "Asia/Tehran")


# ------------------------------------------------------------------ generators
@st.composite
def timestamps(draw: st.DrawFn) -> str:
    moment = BASE + timedelta(minutes=draw(st.integers(0, 5 * 24 * 60)),
                              microseconds=draw(st.sampled_from([0, 0, 0, 500_000, 1])))
    offset = draw(st.sampled_from(OFFSETS))
    if offset in ("Z", "+00:00"):
        local = moment
    else:
        sign = 1 if offset[0] == "+" else -1
        local = moment + sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if local.microsecond:
        text += f".{local.microsecond:06d}"
    return text + offset


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([
        "message.received", "message.received", "message.received", "message.sent",
        "welcome", "conversation.open", "conversation.close", "conversation.close",
        "conversation.assign", "dialogflow.response", "contact.merge"]))
    envelope: dict[str, Any] = {
        "event_id": f"e{draw(st.integers(0, 300))}", "type": kind,
        "workspace_id": draw(st.sampled_from(WORKSPACES)),
        "contact_id": draw(st.sampled_from(CONTACTS)), "occurred_at": draw(timestamps()),
    }
    channel = draw(st.sampled_from(CHANNELS))
    actor_id = draw(st.sampled_from([None, "u1", "bot"]))
    if kind in ("message.received", "welcome"):
        envelope["channel"] = {"type": channel}
    elif kind in ("conversation.open", "dialogflow.response") and draw(st.booleans()):
        envelope["channel"] = {"type": channel, "id": "ch-1"}
    actors = {"message.sent": ["user", "automation", "dialogflow"],
              "conversation.open": ["user", "automation"],
              "conversation.close": ["user", "automation", "dialogflow"],
              "conversation.assign": ["user", "automation", "dialogflow"]}
    if kind in actors:
        envelope["actor"] = {"type": draw(st.sampled_from(actors[kind])), "id": actor_id}
    elif kind != "message.received" and draw(st.booleans()):
        envelope["actor"] = {"type": draw(st.sampled_from(["system", "dialogflow", "user"])),
                             "id": actor_id}
    if kind == "conversation.close" and draw(st.booleans()):
        envelope["data"] = {"category": "sales", "summary": draw(st.sampled_from(["ok", None]))}
    elif kind == "conversation.assign":
        envelope["data"] = {"assignee_id": draw(st.sampled_from([None, "ann", "bob"]))}
        if draw(st.booleans()):
            envelope["data"]["team_id"] = draw(st.sampled_from([None, "t1", "t2"]))
    elif kind == "dialogflow.response":
        flag = draw(st.sampled_from([True, False, "TRUE", "false", "absent"]))
        envelope["data"] = {"parameters": {} if flag == "absent" else {"RB_MARKDONE": flag}}
    elif kind == "contact.merge":
        envelope["data"] = {"secondary_contact_id": draw(st.sampled_from(CONTACTS))}
    return envelope


@st.composite
def invalid_lines(draw: st.DrawFn) -> str:
    envelope = draw(envelopes())
    envelope["_broken"] = True  # an unknown field: ignored by the product, read by the oracle
    how = draw(st.sampled_from(["json", "offset", "channel", "actor", "workspace", "type"]))
    if how == "json":
        return "{not json"
    if how == "offset":
        envelope["occurred_at"] = envelope["occurred_at"][:19]
    elif how == "channel":
        envelope["type"] = "message.received"
        envelope.pop("channel", None)
    elif how == "actor":
        envelope["type"] = "conversation.open"
        envelope["actor"] = {"type": "contact"}
    elif how == "workspace":
        envelope["workspace_id"] = "bad workspace"
    else:
        envelope["type"] = "conversation.reopen"
    return json.dumps(envelope)


@st.composite
def streams(draw: st.DrawFn) -> list[str]:
    """JSONL lines: mostly valid envelopes, some invalid ones, some redeliveries."""
    lines = [json.dumps(e) for e in draw(st.lists(envelopes(), min_size=1, max_size=60))]
    for _ in range(draw(st.integers(0, 4))):
        lines.insert(draw(st.integers(0, len(lines))), draw(invalid_lines()))
    for _ in range(draw(st.integers(0, 4))):
        lines.insert(draw(st.integers(0, len(lines))),
                     lines[draw(st.integers(0, len(lines) - 1))])
    return lines


# ---------------------------------------------------------------- the system
@dataclass
class System:
    events: FakeEventStore = field(default_factory=FakeEventStore)
    read_models: FakeReadModelStore = field(default_factory=FakeReadModelStore)
    batch_size: int = 2_000

    def __post_init__(self) -> None:
        self.pipeline = EmbeddedPipeline(self.events, self.read_models,
                                         batch_size=self.batch_size)

    def run(self, lines: list[str]) -> ImportSummary:
        return self.pipeline.run(line.encode() for line in lines)

    def rows(self, ws: str) -> list[dict[str, Any]]:
        return [r.public() for r in self.read_models.conversations(ws)]

    def all_rows(self) -> list[dict[str, Any]]:
        return [row for ws in WORKSPACES for row in self.rows(ws)]


def comparable(rows: list[dict[str, Any]], *, ids: bool = True) -> list[str]:
    return sorted(json.dumps({k: v for k, v in r.items()
                              if ids or k != "conversation_id"}, sort_keys=True)
                  for r in rows)


# ------------------------------------------------------------------ the oracle
def rfc3339(moment: datetime) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{moment.microsecond:06d}Z" if moment.microsecond else "Z")


class Oracle:
    """CONTRACT §2, read literally, on plain dicts."""

    def __init__(self, timeouts: dict[str, int] | None = None) -> None:
        #: workspace -> inactivity_timeout_seconds (CONTRACT §6.4)
        self.timeouts = timeouts or {}
        #: non-merge closing times of each contact's conversations (merged ones too)
        self.closes: dict[tuple[str, str], list[datetime]] = {}
        self.seen: set[tuple[str, str]] = set()
        self.merged: dict[tuple[str, str], str] = {}
        self.open: dict[tuple[str, str], dict[str, Any]] = {}
        self.last_channel: dict[tuple[str, str], str | None] = {}
        self.conversations: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {"read": 0, "accepted": 0, "duplicate": 0,
                                        "rejected": Counter(), "invalid": 0}

    def run(self, lines: list[str], valid: set[str]) -> None:
        for text in lines:
            self.summary["read"] += 1
            if text not in valid:
                self.summary["invalid"] += 1
                continue
            envelope = json.loads(text)
            key = (envelope["workspace_id"], envelope["event_id"])
            if key in self.seen:
                self.summary["duplicate"] += 1
                continue
            self.seen.add(key)
            reason = self.apply(envelope)
            if reason:
                self.summary["rejected"][reason] += 1
            else:
                self.summary["accepted"] += 1

    def survivor(self, ws: str, contact: str) -> str:
        while (ws, contact) in self.merged:
            contact = self.merged[(ws, contact)]
        return contact

    def start(self, ws: str, contact: str, at: datetime, by: str, channel: str | None) -> None:
        row = {"workspace_id": ws, "contact_id": contact, "channel": channel,
               "status": "open", "opened": at, "closed": None, "opened_by": by,
               "closed_by": None, "closed_by_actor": None, "assignee_id": None,
               "team_id": None, "category": None, "summary": None,
               "messages_received": 0, "messages_sent": 0,
               "first_message": None, "first_response": None, "first_responder_id": None,
               "last_activity": at,
               "recontact": any(at - timedelta(hours=24) <= t <= at
                                for t in self.closes.get((ws, contact), []))}
        self.conversations.append(row)
        self.open[(ws, contact)] = row
        self.last_channel[(ws, contact)] = channel

    def finish(self, key: tuple[str, str], at: datetime, by: str, actor: str | None,
               data: dict[str, Any]) -> None:
        row = self.open.pop(key)
        row.update(status="closed", closed=at, closed_by=by, closed_by_actor=actor,
                   category=data.get("category"), summary=data.get("summary"))
        if by != "merge":
            self.closes.setdefault(key, []).append(at)

    def expire(self, key: tuple[str, str], now: datetime) -> None:
        """§6.4: the contact's open conversation closes at last activity + T."""
        timeout = self.timeouts.get(key[0])
        row = self.open.get(key)
        if timeout is None or row is None:
            return
        deadline = row["last_activity"] + timedelta(seconds=timeout)
        if now >= deadline:
            self.finish(key, deadline, "inactivity", None, {})
    def apply(self, e: dict[str, Any]) -> str | None:
        ws, kind, data = e["workspace_id"], e["type"], e.get("data") or {}
        at = datetime.fromisoformat(e["occurred_at"]).astimezone(UTC)
        actor = e.get("actor") or {}
        channel = (e.get("channel") or {}).get("type")
        contact = self.survivor(ws, e["contact_id"])
        key = (ws, contact)
        self.expire(key, at)
        if kind == "contact.merge":
            self.expire((ws, data["secondary_contact_id"]), at)
        is_open = key in self.open
        if kind == "dialogflow.response":
            flag = (data.get("parameters") or {}).get("RB_MARKDONE")
            if flag is None:
                return None
            kind = "conversation.close" if str(flag).lower() == "true" else "conversation.open"
            actor = {"type": "dialogflow", "id": actor.get("id")}
            data = {}
        if kind == "message.received":
            if not is_open:
                self.start(ws, contact, at, "contact", channel)
            row = self.open[key]
            row["messages_received"] += 1
            row["last_activity"] = max(row["last_activity"], at)
            if row["first_message"] is None:
                row["first_message"] = at
        elif kind == "message.sent":
            if is_open:
                row = self.open[key]
                row["messages_sent"] += 1
                row["last_activity"] = max(row["last_activity"], at)
                if (actor["type"] == "user" and row["first_message"] is not None
                        and row["first_response"] is None):
                    row["first_response"] = at
                    row["first_responder_id"] = actor.get("id")
        elif kind == "welcome":
            if channel not in ("facebook", "viber"):
                return "welcome_not_supported"
            if is_open:
                return "already_open"
            self.start(ws, contact, at, "welcome", channel)
        elif kind == "conversation.open":
            if is_open:
                return "already_open"
            fallback = self.last_channel.get(key)
            self.start(ws, contact, at, actor["type"], channel or fallback)
        elif kind == "conversation.close":
            if not is_open:
                return "no_open_conversation"
            self.finish(key, at, actor["type"], actor.get("id"), data)
        elif kind == "conversation.assign":
            if not is_open:
                return "no_open_conversation"
            self.open[key]["assignee_id"] = data["assignee_id"]
            if "team_id" in data:
                self.open[key]["team_id"] = data["team_id"]
        elif kind == "contact.merge":
            secondary = data["secondary_contact_id"]
            if (ws, secondary) in self.merged:
                return "already_merged"
            if secondary == contact:
                return "invalid_merge"
            if (ws, secondary) in self.open:
                self.finish((ws, secondary), at, "merge", None, {})
            self.merged[(ws, secondary)] = contact
            self.closes.setdefault(key, []).extend(self.closes.get((ws, secondary), []))
        return None

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for c in self.conversations:
            row = {k: v for k, v in c.items()
                   if k not in ("opened", "closed", "first_message", "first_response",
                                "last_activity")}
            row["opened_at"] = rfc3339(c["opened"])
            row["closed_at"] = rfc3339(c["closed"]) if c["closed"] else None
            row["resolution_seconds"] = (
                round(max(0.0, (c["closed"] - c["opened"]).total_seconds()), 3)
                if c["closed"] else None)
            first, response = c["first_message"], c["first_response"]
            row["first_message_at"] = rfc3339(first) if first else None
            row["first_response_at"] = rfc3339(response) if response else None
            row["first_response_seconds"] = (
                round(max(0.0, (response - first).total_seconds()), 3) if response else None)
            row["first_response_business_seconds"] = row["first_response_seconds"]
            row["resolution_business_seconds"] = row["resolution_seconds"]
            row["last_activity_at"] = rfc3339(c["last_activity"])
            out.append(row)
        return out


def valid_lines(lines: list[str]) -> set[str]:
    """The lines the generator meant to be valid (not JSON-broken, not marked broken)."""
    return {text for text in lines if text.startswith("{\"") and "_broken" not in json.loads(text)}


# ------------------------------------------------------------------- properties
@PROPERTY
@given(streams())
def test_the_pipeline_agrees_with_a_naive_reading_of_the_contract(lines: list[str]) -> None:
    system = System()
    summary = system.run(lines)
    oracle = Oracle()
    oracle.run(lines, valid_lines(lines))
    expected = dict(oracle.summary, rejected=dict(sorted(oracle.summary["rejected"].items())))
    assert summary.as_dict() == expected
    assert comparable(system.all_rows(), ids=False) == comparable(oracle.rows(), ids=False)


@PROPERTY
@given(streams())
def test_never_two_open_conversations_for_one_contact(lines: list[str]) -> None:
    system = System()
    system.run(lines)
    rows = system.all_rows()
    assert len({r["conversation_id"] for r in rows}) == len(rows)
    open_rows = Counter((r["workspace_id"], r["contact_id"]) for r in rows
                        if r["status"] == "open")
    assert all(n == 1 for n in open_rows.values())
    for ws in WORKSPACES:
        for contact_id in CONTACTS:
            contact = Contact.replay(ws, contact_id,
                                     system.events.load(aggregate_id(ws, contact_id)))
            open_row = [r["conversation_id"] for r in rows if r["status"] == "open"
                        and (r["workspace_id"], r["contact_id"]) == (ws, contact_id)]
            assert open_row == ([contact.open_conversation_id]
                                if contact.open_conversation_id else [])
            if contact.merged_into is not None:
                assert contact.open_conversation_id is None
                cached = system.pipeline.uow.processor.contact(ws, contact_id)
                assert cached.merged_into == contact.merged_into


@PROPERTY
@given(streams())
def test_processing_the_same_input_twice_changes_nothing(lines: list[str]) -> None:
    system = System()
    first = system.run(lines)
    rows = comparable(system.all_rows())
    stored = system.events.max_notification_id()
    second = system.run(lines)
    assert second.accepted == 0 and not second.rejected
    assert second.invalid == first.invalid
    assert second.duplicate + second.invalid == second.read == first.read
    assert comparable(system.all_rows()) == rows
    assert system.events.max_notification_id() == stored
    again = System(system.events, FakeReadModelStore())  # a fresh process on the same store
    assert again.run(lines).accepted == 0
    assert comparable(again.all_rows()) == rows


@PROPERTY
@given(streams(), st.integers(1, 7))
def test_batch_size_does_not_matter(lines: list[str], size: int) -> None:
    whole, split, single = System(), System(batch_size=size), System(batch_size=1)
    summaries = [s.run(lines).as_dict() for s in (whole, split, single)]
    assert summaries[0] == summaries[1] == summaries[2]
    assert comparable(whole.all_rows()) == comparable(split.all_rows()) == comparable(
        single.all_rows())


@PROPERTY
@given(streams(), st.lists(st.integers(1, 60), min_size=1, max_size=4))
def test_splitting_the_stream_into_several_imports_does_not_matter(
        lines: list[str], cuts: list[int]) -> None:
    whole, parts = System(), System()
    whole.run(lines)
    start = 0
    for cut in sorted(cuts):
        parts.run(lines[start:cut])
        start = max(start, cut)
    parts.run(lines[start:])
    assert comparable(whole.all_rows()) == comparable(parts.all_rows())


@PROPERTY
@given(streams())
def test_replay_equals_live(lines: list[str]) -> None:
    system = System()
    system.run(lines)
    live = comparable(system.all_rows())
    fresh = FakeReadModelStore()
    ConversationProjection(fresh).replay(system.events)
    assert comparable([r.public() for ws in WORKSPACES for r in fresh.conversations(ws)]) == live
    system.pipeline.projection.replay(system.events)  # in place, over the live rows
    assert comparable(system.all_rows()) == live
    assert (fresh.position("projection:conversations") or 0) == (
        system.events.max_notification_id())


# ---------------------------------------------------------------- metrics
def naive_metrics(rows: list[dict[str, Any]], workspace: str, group_by: str, tz: str, *,
                  date_from: date | None, date_to: date | None) -> dict[str, Any]:
    """CONTRACT §3 read literally, one conversation at a time, no shortcuts."""
    zone = ZoneInfo(tz)

    def local_day(text: str) -> date:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(zone).date()

    def in_range(day: date) -> bool:
        return (date_from is None or day >= date_from) and (date_to is None or day <= date_to)

    def key_of(row: dict[str, Any], day: date) -> str:
        if group_by == "day":
            return day.isoformat()
        if group_by == "week":
            iso = day.isocalendar()
            return f"{iso.year:04d}-W{iso.week:02d}"
        if group_by == "month":
            return f"{day.year:04d}-{day.month:02d}"
        attribute = {"channel": "channel", "opened_by": "opened_by", "closed_by": "closed_by",
                     "assignee": "assignee_id", "team": "team_id"}[group_by]
        default = "none" if group_by == "channel" else "unassigned"
        return row[attribute] or default

    opened: Counter[str] = Counter()
    recontacts: Counter[str] = Counter()
    closed: Counter[str] = Counter()
    times: dict[str, list[float]] = {}
    responses: dict[str, list[float]] = {}
    total_opened, total_closed, total_times, total_recontacts = 0, 0, [], 0
    total_responses: list[float] = []
    for row in rows:
        if row["workspace_id"] != workspace:
            continue
        day = local_day(row["opened_at"])
        if in_range(day):
            total_opened += 1
            opened[key_of(row, day)] += 1
            total_recontacts += row["recontact"]
            recontacts[key_of(row, day)] += row["recontact"]
        # §6.6: first responses by the day of first_response_at; closed_by rows hold
        # closed conversations only, but the total covers the whole range (§3)
        if row["first_response_at"] is not None:
            day = local_day(row["first_response_at"])
            if in_range(day):
                if group_by != "closed_by" or row["closed_at"] is not None:
                    responses.setdefault(key_of(row, day), []).append(
                        row["first_response_seconds"])
                total_responses.append(row["first_response_seconds"])
        if row["closed_at"] is None:
            continue
        day = local_day(row["closed_at"])
        if not in_range(day):
            continue
        key = key_of(row, day)
        closed[key] += 1
        total_closed += 1
        if row["closed_by"] not in ("merge", "inactivity"):
            seconds = row["resolution_seconds"]
            times.setdefault(key, []).append(seconds)
            total_times.append(seconds)
    opened_counted = group_by in ("day", "week", "month", "channel", "opened_by")
    keys = sorted(k for k in set(opened) | set(closed) | set(responses)
                  if closed[k] or (opened_counted and opened[k]) or responses.get(k))
    return {
        "rows": [{"key": k, "opened": opened[k] if opened_counted else None,
                  "closed": closed[k], "resolution_seconds": naive_stats(times.get(k, [])),
                  "first_response_seconds": naive_stats(responses.get(k, [])),
                  "recontacts": recontacts[k] if opened_counted else None}
                 for k in keys],
        "total": {"key": None, "opened": total_opened, "closed": total_closed,
                  "resolution_seconds": naive_stats(total_times),
                  "first_response_seconds": naive_stats(total_responses),
                  "recontacts": total_recontacts},
    }


def naive_stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return dict.fromkeys(("count", "avg", "p50", "p90", "min", "max"), None) | {"count": 0}
    ordered = sorted(values)

    def pct(q: float) -> float:
        h = (len(ordered) - 1) * q
        lo, hi = math.floor(h), math.ceil(h)
        return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])

    return {"count": len(ordered), "avg": sum(ordered) / len(ordered), "p50": pct(0.5),
            "p90": pct(0.9), "min": ordered[0], "max": ordered[-1]}


def assert_same_metrics(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert [r["key"] for r in actual["rows"]] == [r["key"] for r in expected["rows"]]
    for got, want in zip([*actual["rows"], actual["total"]],
                         [*expected["rows"], expected["total"]], strict=True):
        assert (got["key"], got["opened"], got["closed"], got["recontacts"]) == (
            want["key"], want["opened"], want["closed"], want["recontacts"])
        # no schedule: business durations equal the calendar ones (§6.3)
        assert got["resolution_business_seconds"] == got["resolution_seconds"]
        assert got["first_response_business_seconds"] == got["first_response_seconds"]
        for name in ("resolution_seconds", "first_response_seconds"):
            for stat, value in want[name].items():
                if value is None or stat == "count":
                    assert got[name][stat] == value
                else:  # shown with 3 decimals (§6.6)
                    assert math.isclose(got[name][stat], value, rel_tol=1e-9,
                                        abs_tol=1e-3), (stat, got, want)


@PROPERTY
@given(streams(), st.sampled_from(["day", "week", "month", "channel", "opened_by",
                                   "closed_by", "assignee", "team"]),
       st.sampled_from(ZONES), st.sampled_from(WORKSPACES),
       st.one_of(st.none(), st.integers(0, 6)), st.one_of(st.none(), st.integers(0, 6)))
def test_metrics_equal_a_naive_recomputation(  # noqa: PLR0917
        lines: list[str], group_by: str, tz: str, ws: str, low: int | None,
        high: int | None) -> None:
    system = System()
    system.run(lines)
    date_from = BASE.date() + timedelta(days=low) if low is not None else None
    date_to = BASE.date() + timedelta(days=high) if high is not None else None
    actual = compute(MetricsQuery(ws, group_by, tz, date_from, date_to),
                     system.read_models.facts(ws))
    expected = naive_metrics(system.rows(ws), ws, group_by, tz, date_from=date_from,
                             date_to=date_to)
    assert (actual["workspace_id"], actual["group_by"], actual["tz"]) == (ws, group_by, tz)
    assert actual["from"] == (date_from.isoformat() if date_from else None)
    assert actual["to"] == (date_to.isoformat() if date_to else None)
    assert_same_metrics(actual, expected)


# --------------------------------------------------------- local date memo
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR_US = 3_600_000_000


def naive_local_date(micros: int, tz: str) -> date:
    return (_EPOCH + timedelta(microseconds=micros)).astimezone(ZoneInfo(tz)).date()


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ZONES),
       st.lists(st.tuples(st.integers(to_us(datetime(1900, 1, 1, tzinfo=UTC)) // HOUR_US,
                                      to_us(datetime(2100, 1, 1, tzinfo=UTC)) // HOUR_US),
                          st.lists(st.integers(0, HOUR_US - 1), min_size=1, max_size=6)),
                min_size=1, max_size=20))
def test_local_dates_memo_equals_astimezone(tz: str,
                                            hours: list[tuple[int, list[int]]]) -> None:
    local = _LocalDates(ZoneInfo(tz))
    for hour, offsets in hours:
        for offset in offsets:
            micros = hour * HOUR_US + offset
            assert local(micros) == naive_local_date(micros, tz), (tz, micros)


def transition_hours(tz: str, year: int) -> list[int]:
    """UTC hours of ``year`` in which the zone's offset changes or a local day starts."""
    zone = ZoneInfo(tz)
    start = to_us(datetime(year, 1, 1, tzinfo=UTC)) // HOUR_US
    found = []
    for hour in range(start, start + 366 * 24):
        a = (_EPOCH + timedelta(hours=hour)).astimezone(zone)
        b = (_EPOCH + timedelta(hours=hour + 1, microseconds=-1)).astimezone(zone)
        if a.utcoffset() != b.utcoffset():
            found.append(hour)
    return found


def test_local_dates_memo_around_every_offset_change() -> None:
    for tz in ZONES:
        for year in (2011, 2026):
            local = _LocalDates(ZoneInfo(tz))
            for hour in transition_hours(tz, year):
                for step in range(-3, 5):
                    for minute in (0, 1, 14, 15, 29, 30, 31, 44, 45, 59):
                        micros = (hour + step) * HOUR_US + minute * 60_000_000
                        for micros_ in (micros, micros - 1):
                            assert local(micros_) == naive_local_date(micros_, tz), (
                                tz, micros_)


def test_local_dates_memo_at_every_local_midnight_of_a_year() -> None:
    for tz in ("Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns", "Pacific/Chatham"):
        zone = ZoneInfo(tz)
        local = _LocalDates(zone)
        day = date(2026, 1, 1)
        while day.year == 2026:
            midnight = to_us(datetime(day.year, day.month, day.day, tzinfo=zone))
            for micros in (midnight - 1, midnight, midnight + 1, midnight - HOUR_US // 2):
                assert local(micros) == naive_local_date(micros, tz), (tz, day)
            day += timedelta(days=1)
