"""The stories of the black-box contract acceptance suite (CONTRACT §1-§4).

Every story lives in its own workspace, so one ``bonychat import`` of all of
them (the session fixture in ``conftest.py``) serves every test, and each
test reads only its workspace. Each story states, by hand, the outcomes its
lines must have; the import summary must equal their sum.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

DAY = "2026-11-24"


def at(clock: str, day: str = DAY) -> str:
    """``at("10:00")`` -> ``2026-11-24T10:00:00Z``; seconds optional."""
    return f"{day}T{clock if clock.count(':') == 2 else clock + ':00'}Z"


@dataclass
class Story:
    """The lines of one workspace, and the outcomes they must have."""

    ws: str
    lines: list[str] = field(default_factory=list)
    accepted: int = 0
    duplicate: int = 0
    invalid: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    #: the lines that must be dead letters (marked with :meth:`dead`)
    dead_lines: list[str] = field(default_factory=list)
    #: §6.1 settings PUT for the workspace before the import (None: none)
    settings: dict[str, Any] | None = None

    def raw(self, line: str) -> None:
        self.lines.append(line)

    def dead(self) -> None:
        """The last line is invalid: it must reach the dead-letter store as it is."""
        self.dead_lines.append(self.lines[-1])

    def event(self, kind: str, contact: str, when: str, *, eid: str | None = None,
              **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"event_id": eid or f"{self.ws}-{len(self.lines) + 1}",
                                "type": kind, "workspace_id": self.ws,
                                "contact_id": contact, "occurred_at": when}
        body.update({k: v for k, v in fields.items() if v is not None})
        self.lines.append(json.dumps(body))
        return body

    def recv(self, contact: str, when: str, ch: str = "sms", **fields: Any) -> None:
        self.event("message.received", contact, when, channel={"type": ch}, **fields)

    def sent(self, contact: str, when: str, actor: str = "user", **fields: Any) -> None:
        self.event("message.sent", contact, when, actor={"type": actor, "id": "u1"}, **fields)

    def close(self, contact: str, when: str, actor: str = "user", actor_id: str | None = "u1",
              **fields: Any) -> None:
        self.event("conversation.close", contact, when,
                   actor={"type": actor, "id": actor_id}, **fields)

    def open(self, contact: str, when: str, actor: str = "user", **fields: Any) -> None:
        self.event("conversation.open", contact, when, actor={"type": actor, "id": "u1"},
                   **fields)

    def assign(self, contact: str, when: str, data: dict[str, Any],
               actor: str = "user") -> None:
        self.event("conversation.assign", contact, when, actor={"type": actor, "id": "u1"},
                   data=data)

    def dialogflow(self, contact: str, when: str, data: dict[str, Any] | None = None,
                   **fields: Any) -> None:
        self.event("dialogflow.response", contact, when, data=data, **fields)

    def merge(self, primary: str, secondary: str, when: str, **fields: Any) -> None:
        self.event("contact.merge", primary, when,
                   data={"secondary_contact_id": secondary}, **fields)

    def expect(self, accepted: int = 0, duplicate: int = 0, invalid: int = 0,
               **rejected: int) -> Story:
        self.accepted, self.duplicate, self.invalid, self.rejected = (
            accepted, duplicate, invalid, rejected)
        return self


def lifecycle_stories() -> list[Story]:
    recv = Story("l-recv")
    recv.recv("c1", at("10:00"), "whatsapp", data={"message_id": "m1", "text": "hi"})
    recv.recv("c1", at("10:01"), "telegram")  # counted in the open one, channel kept
    recv.sent("c1", at("10:02"))
    recv.sent("c2", at("10:03"), actor="automation")  # nothing open: accepted, no effect
    recv.event("message.received", "c3", at("10:04"), channel={"type": "line"},
               actor={"type": "contact", "id": "c3"})
    recv.expect(accepted=5)

    welcome = Story("l-welcome")
    welcome.event("welcome", "c1", at("10:00"), channel={"type": "facebook"})
    welcome.event("welcome", "c1", at("10:01"), channel={"type": "facebook"})  # already_open
    welcome.event("welcome", "c2", at("10:00"), channel={"type": "viber"},
                  actor={"type": "automation"})
    welcome.event("welcome", "c3", at("10:00"), channel={"type": "whatsapp"})
    welcome.event("welcome", "c4", at("10:00"), channel={"type": "email"})
    welcome.expect(accepted=2, already_open=1, welcome_not_supported=2)

    opening = Story("l-open")
    opening.open("c1", at("10:00"))  # no channel, no history: null
    opening.open("c1", at("10:01"), actor="automation")  # already_open
    opening.close("c1", at("10:02"))
    opening.open("c1", at("10:03"), actor="automation")  # last conversation's channel: null
    opening.recv("c2", at("10:00"), "line")
    opening.close("c2", at("10:05"))
    opening.open("c2", at("11:00"), actor="automation")  # falls back to line
    opening.close("c2", at("11:10"))
    opening.open("c2", at("12:00"), channel={"type": "email"})
    opening.close("c2", at("12:01"))
    opening.open("c2", at("13:00"))  # falls back to email, the last conversation's
    opening.expect(accepted=10, already_open=1)

    closing = Story("l-close")
    closing.close("c1", at("10:00"))  # no_open_conversation
    closing.recv("c1", at("10:00:10"))
    closing.close("c1", at("10:05:10"), actor="automation", actor_id="bot-7",
                  data={"category": "billing", "summary": "refund sent"})
    closing.close("c1", at("10:06"))  # no_open_conversation: never reopened
    closing.recv("c1", at("10:07"))  # a new conversation
    closing.recv("c2", at("10:00"))
    closing.close("c2", at("09:59"), actor="dialogflow", actor_id=None)  # resolution 0
    closing.expect(accepted=5, no_open_conversation=2)

    assign = Story("l-assign")
    assign.assign("c1", at("09:59"), {"assignee_id": "alice"})  # no_open_conversation
    assign.recv("c1", at("10:00"), "webchat")
    assign.assign("c1", at("10:01"), {"assignee_id": "alice", "team_id": "t1"})
    assign.assign("c1", at("10:02"), {"assignee_id": "bob"}, actor="automation")  # team kept
    assign.close("c1", at("10:03"))
    assign.recv("c2", at("10:00"), "webchat")
    assign.assign("c2", at("10:01"), {"assignee_id": "carol", "team_id": "t2"})
    assign.assign("c2", at("10:02"), {"assignee_id": None, "team_id": None}, actor="dialogflow")
    assign.close("c2", at("10:04"))
    assign.recv("c3", at("10:00"), "webchat")
    assign.assign("c3", at("10:01"), {"assignee_id": "dave", "team_id": "t2"})
    assign.assign("c3", at("10:02"), {"assignee_id": "erin", "team_id": None})
    assign.close("c3", at("10:05"))
    assign.recv("c4", at("10:00"), "webchat")
    assign.assign("c4", at("10:01"), {"assignee_id": "frank", "team_id": "t3"})
    assign.expect(accepted=14, no_open_conversation=1)

    flow = Story("l-df")
    flow.recv("c1", at("10:00"), "facebook")
    flow.dialogflow("c1", at("10:01"), {"parameters": {"RB_MARKDONE": "TRUE"}})
    flow.recv("c2", at("10:00"), "facebook")
    flow.dialogflow("c2", at("10:02"), {"parameters": {"RB_MARKDONE": True}})
    flow.recv("c3", at("10:00"), "facebook")
    flow.dialogflow("c3", at("10:03"), {"parameters": {"RB_MARKDONE": "true"}},
                    actor={"type": "dialogflow", "id": "agent-x"})
    flow.dialogflow("c4", at("10:00"), {"parameters": {"RB_MARKDONE": "false"}})
    flow.dialogflow("c4", at("10:01"), {"parameters": {"RB_MARKDONE": False}})  # already_open
    flow.dialogflow("c5", at("10:00"), {"parameters": {"RB_MARKDONE": True}})  # none open
    flow.dialogflow("c6", at("10:00"))
    flow.dialogflow("c6", at("10:01"), {"parameters": {"lang": "de"}})
    flow.recv("c7", at("10:00"), "viber")
    flow.dialogflow("c7", at("10:10"), {"parameters": {"RB_MARKDONE": "true"}})
    flow.dialogflow("c7", at("10:20"), {"parameters": {"RB_MARKDONE": "false"}})  # viber again
    flow.dialogflow("c8", at("10:00"), {"parameters": {"RB_MARKDONE": "False"}},
                    channel={"type": "telegram"})  # an open with the event's channel
    flow.expect(accepted=13, already_open=1, no_open_conversation=1)

    merge = Story("l-merge")
    merge.recv("A", at("10:00"), "sms")
    merge.recv("B", at("10:01"), "email")
    merge.merge("A", "B", at("10:05"), actor={"type": "system", "id": "ops-1"})
    merge.recv("B", at("10:06"), "email")  # applies to A's open conversation
    merge.merge("A", "B", at("10:07"))  # already_merged
    merge.merge("A", "A", at("10:08"))  # invalid_merge
    merge.merge("B", "A", at("10:09"))  # primary B resolves to A: invalid_merge
    merge.recv("C", at("10:10"), "whatsapp")
    merge.merge("C", "A", at("10:11"))  # closes A's conversation; B -> A -> C
    merge.recv("B", at("10:12"), "whatsapp")  # counted in C's conversation
    merge.close("B", at("10:15"))  # closes C's conversation
    merge.merge("C", "B", at("10:16"))  # already_merged
    merge.recv("B", at("10:20"), "telegram")  # opens C's next conversation
    merge.expect(accepted=9, already_merged=2, invalid_merge=2)

    survivor = Story("l-merge2")  # a merge whose primary was itself merged
    survivor.recv("P", at("10:00"), "sms")
    survivor.recv("Q", at("10:01"), "email")
    survivor.merge("P", "Q", at("10:02"))
    survivor.recv("R", at("10:03"), "line")
    survivor.merge("Q", "R", at("10:04"))  # Q's survivor P is the primary: R -> P
    survivor.merge("R", "Q", at("10:04:30"))  # Q already merged (not invalid_merge)
    survivor.sent("R", at("10:05"))  # counted in P's conversation
    survivor.close("R", at("10:06"))  # closes P's conversation
    survivor.merge("P", "S", at("10:07"))  # S never seen: accepted, nothing to close
    survivor.expect(accepted=8, already_merged=1)

    isolated = Story("l-xws-b")  # the same contact ids as l-xws-a, another workspace
    isolated.recv("c1", at("10:00"))
    isolated.recv("P", at("10:01"))
    isolated.merge("P", "c1", at("10:02"))
    isolated.expect(accepted=3)
    untouched = Story("l-xws-a")
    untouched.recv("c1", at("09:00"), "viber")
    untouched.recv("c1", at("10:03"), "viber")  # after the merge in l-xws-b: still c1's own
    untouched.expect(accepted=2)
    return [recv, welcome, opening, closing, assign, flow, merge, survivor, isolated, untouched]


def dedupe_stories() -> list[Story]:
    dup = Story("l-dup")
    dup.event("message.received", "c1", at("10:00"), eid="e1", channel={"type": "sms"})
    dup.event("conversation.close", "c2", at("11:00"), eid="e1",
              actor={"type": "user"})  # other content, same id: duplicate
    dup.event("conversation.close", "c9", at("10:01"), eid="e2",
              actor={"type": "user"})  # rejected, which counts as processed
    dup.event("message.received", "c9", at("10:02"), eid="e2", channel={"type": "sms"})
    dup.event("message.received", "c3", at("10:03"), eid="e3")  # invalid: no channel
    dup.dead()
    dup.event("message.received", "c3", at("10:04"), eid="e3", channel={"type": "sms"})
    dup.expect(accepted=2, duplicate=2, invalid=1, no_open_conversation=1)

    other = Story("l-dup2")  # the same event_id in another workspace is another event
    other.event("message.received", "c1", at("10:00"), eid="e1", channel={"type": "sms"})
    other.expect(accepted=1)
    return [dup, other]


def envelope_stories() -> list[Story]:
    """Validation edges that need the import (the HTTP API refuses foreign workspaces)."""
    env = Story("l-env")
    env.raw("")
    env.raw("   ")
    env.event("message.received", "c1", "2026-11-24T12:00:00+02:00", channel={"type": "sms"},
              data={"text": "hi", "future_field": 1}, future_top_level={"x": 1})
    env.event("message.received", "c2", "2026-11-24T10:00:00", channel={"type": "sms"})
    env.dead()
    env.raw("{not json")
    env.dead()
    env.raw("")
    env.event("message.received", "x" * 200, at("10:00"), eid="i" * 200,
              channel={"type": "sms"})
    env.event("message.received", "y" * 201, at("10:00"), channel={"type": "sms"})
    env.dead()
    env.event("message.received", "c3", at("10:00"), eid="j" * 201, channel={"type": "sms"})
    env.dead()
    env.expect(accepted=2, invalid=4)

    pattern = Story("l-env")
    for ws in ("bad.ws", "", "w" * 65, "w s",  # invalid
               "w" * 64, "Az_09-x"):  # valid
        pattern.raw(json.dumps({"event_id": f"p-{len(ws)}", "type": "message.received",
                                "workspace_id": ws, "contact_id": "c1",
                                "occurred_at": at("10:00"), "channel": {"type": "sms"}}))
        if len(ws) not in (64, 7):
            pattern.dead()
    pattern.expect(accepted=2, invalid=4)
    return [env, pattern]


def metrics_stories() -> list[Story]:
    example = Story("m-example")  # the JSON example of CONTRACT §3
    example.recv("c1", at("10:00"))
    example.close("c1", at("10:01"))
    example.recv("c2", at("11:00"))
    example.close("c2", at("11:02"))
    example.recv("c3", at("12:00"))
    example.expect(accepted=5)

    dst = Story("m-dst")  # Europe/Berlin: 2026-03-29 has 23 hours, 2026-10-25 has 25
    dst.recv("c1", "2026-03-28T22:59:59Z")  # 23:59:59 CET, 28 March
    dst.close("c1", "2026-03-28T23:00:30Z")  # 00:00:30 CET, 29 March: 31 s
    dst.recv("c2", "2026-03-28T23:00:00Z")  # 00:00 CET, 29 March
    dst.recv("c3", "2026-03-29T21:59:59Z")  # 23:59:59 CEST, 29 March
    dst.recv("c4", "2026-03-29T22:00:00Z")  # 00:00 CEST, 30 March
    dst.recv("c5", "2026-10-24T21:59:59Z")  # 23:59:59 CEST, 24 October
    dst.recv("c6", "2026-10-24T22:00:00Z")  # 00:00 CEST, 25 October
    dst.recv("c7", "2026-10-25T22:59:59Z")  # 23:59:59 CET, 25 October
    dst.recv("c8", "2026-10-25T23:00:00Z")  # 00:00 CET, 26 October
    dst.expect(accepted=9)

    week = Story("m-week")
    week.recv("c1", "2025-12-29T10:00:00Z")  # Monday of 2026-W01
    week.recv("c2", "2026-01-01T10:00:00Z")  # Thursday, 2026-W01
    week.recv("c3", "2026-12-31T10:00:00Z")  # Thursday, 2026-W53
    week.recv("c4", "2027-01-03T23:30:00Z")  # Sunday 2026-W53 in UTC, Monday 2027-W01 in Berlin
    week.recv("c5", "2027-01-04T10:00:00Z")  # Monday, 2027-W01
    week.recv("c6", "2025-12-28T10:00:00Z")  # Sunday, 2025-W52
    week.expect(accepted=6)

    span = Story("m-range")  # America/New_York is UTC-5 in November
    span.recv("c1", "2026-11-24T04:59:59Z")  # 23:59:59 on the 23rd
    span.close("c1", "2026-11-24T05:00:30Z")  # 00:00:30 on the 24th: 31 s
    span.recv("c2", "2026-11-24T05:00:00Z")  # 00:00 on the 24th
    span.close("c2", "2026-11-25T05:00:00Z")  # 00:00 on the 25th: 86400 s
    span.recv("c3", "2026-11-25T04:59:59Z")  # 23:59:59 on the 24th
    span.close("c3", "2026-11-25T05:00:10Z")  # 00:00:10 on the 25th: 11 s
    span.expect(accepted=6)

    dims = Story("m-dims")
    dims.recv("c1", at("10:00"), "sms")
    dims.recv("c2", at("10:00"), "email")
    dims.open("c3", at("10:00"))  # channel none
    dims.event("welcome", "c4", at("10:00"), channel={"type": "facebook"})
    dims.recv("c5", at("10:00"), "sms")
    dims.close("c5", at("10:10"))  # 600 s, by user
    dims.open("c6", at("10:00"), actor="automation", channel={"type": "email"})
    dims.close("c6", at("10:01"), actor="automation")  # 60 s
    dims.expect(accepted=8)
    return [example, dst, week, span, dims]


def service_level_stories() -> list[Story]:
    """CONTRACT §6.2, §6.5 and §6.6 for workspaces without settings."""
    first = Story("s-first")
    first.recv("c1", at("10:00"))
    first.sent("c1", at("10:01"), actor="automation")  # not a human
    first.sent("c1", at("10:02"), actor="dialogflow")
    first.event("message.sent", "c1", at("10:05"), actor={"type": "user", "id": "u7"})
    first.event("message.sent", "c1", at("10:06"), actor={"type": "user", "id": "u8"})
    first.close("c1", at("10:10"))
    first.open("c2", at("10:00"))
    first.sent("c2", at("10:01"))  # before any message.received: not a response
    first.recv("c2", at("10:03"))
    first.event("message.sent", "c2", at("10:04"), actor={"type": "user", "id": "u2"})
    first.assign("c2", at("10:04:30"), {"assignee_id": "zed"})
    first.recv("c3", at("10:00"))
    first.sent("c3", at("09:58"))  # arrives after the message, occurred before: 0 s
    first.event("welcome", "c4", at("10:00"), channel={"type": "facebook"})
    first.sent("c4", at("10:01"))  # no message.received in it: no first response
    first.recv("c5", at("10:00"))
    first.recv("c6", "2026-11-22T23:59:00Z")
    first.sent("c6", "2026-11-23T00:01:00Z")  # a day with only a first response
    first.expect(accepted=18)

    again = Story("s-recontact")
    again.recv("c1", at("10:00"))
    again.close("c1", at("10:10"))
    again.recv("c1", "2026-11-25T10:09:59Z")  # 23:59:59 after the close: a re-contact
    again.close("c1", "2026-11-25T10:20:00Z")
    again.recv("c1", "2026-11-26T11:00:00Z")  # 24:40 after: not one
    again.recv("c3", at("10:00"))
    again.merge("Q", "c3", at("10:05"))  # c3's conversation closed by merge
    again.recv("Q", at("10:06"))  # a merge closing does not make a re-contact
    again.close("Q", at("10:07"))
    again.recv("Q", at("10:08"))  # closed by a user a minute ago: a re-contact
    again.recv("c4", at("10:00"))
    again.close("c4", at("10:01"))
    again.merge("R", "c4", at("10:02"))
    again.recv("R", at("10:03"))  # the survivor's history holds c4's conversation
    again.recv("c9", "2026-11-23T10:00:00Z")
    again.close("c9", "2026-11-23T12:00:00Z")
    again.recv("c9", "2026-11-23T11:00:00Z")  # the closing is after this opening: not one
    again.expect(accepted=17)

    fractions = Story("s-round")
    fractions.recv("c1", at("10:00:00.123456"))
    fractions.sent("c1", at("10:00:00.5"))  # 0.376544 s
    fractions.close("c1", at("10:00:01"))  # 0.876544 s
    fractions.recv("c2", at("10:00:00"))
    fractions.close("c2", at("10:00:00.0004"))  # 0.0004 s
    fractions.expect(accepted=5)
    return [first, again, fractions]


def weekdays(start: str, end: str, days: str = "mon tue wed thu fri") -> list[dict[str, str]]:
    return [{"day": day, "start": start, "end": end} for day in days.split()]


def settings_stories() -> list[Story]:
    """CONTRACT §6.1, §6.3 and §6.4: workspaces with settings."""
    zone = Story("s-tz", settings={"timezone": "Europe/Berlin"})
    zone.recv("c1", "2026-11-24T23:30:00Z")  # 00:30 on the 25th in Berlin
    zone.expect(accepted=1)

    hours = Story("s-bh", settings={"timezone": "Europe/Berlin", "business_hours": [
        *weekdays("09:00", "17:00"), {"day": "sun", "start": "00:00", "end": "24:00"}]})
    hours.recv("c1", "2026-11-24T07:00:00Z")  # Tuesday 08:00 CET
    hours.sent("c1", "2026-11-24T08:30:00Z")  # 09:30: 5400 s, 1800 s of them in hours
    hours.close("c1", "2026-11-24T17:00:00Z")  # 18:00: 36000 s, 28800 in hours
    hours.recv("c2", "2026-11-27T15:00:00Z")  # Friday 16:00
    hours.close("c2", "2026-11-30T09:00:00Z")  # Monday 10:00: 1 h + Sunday 24 h + 1 h
    hours.recv("c3", "2026-03-28T23:00:00Z")  # Sunday 00:00 CET, the 23-hour day
    hours.close("c3", "2026-03-29T22:00:00Z")  # Monday 00:00 CEST
    hours.recv("c4", "2026-10-24T22:00:00Z")  # Sunday 00:00 CEST, the 25-hour day
    hours.close("c4", "2026-10-25T23:00:00Z")  # Monday 00:00 CET
    hours.expect(accepted=9)

    later = Story("s-bh2", settings={"business_hours": weekdays("10:00", "11:00", "tue")})
    later.recv("c1", at("09:00"))
    later.close("c1", at("12:00"))  # 10800 s, 3600 in hours
    later.expect(accepted=2)

    idle = Story("s-idle", settings={"inactivity_timeout_seconds": 3600})
    idle.recv("c1", at("10:00"))
    idle.sent("c1", at("10:30"))
    idle.recv("c1", at("11:30"))  # exactly T after the last activity: closes, then opens
    idle.close("c1", at("12:00"))
    idle.recv("c2", at("10:00"))
    idle.close("c2", at("11:00"))  # closed by inactivity first: no_open_conversation
    quiet = idle.event("message.received", "c3", at("10:00"), channel={"type": "sms"})
    idle.recv("c3", at("10:59:59"))  # in time; nothing after it: only a sweep closes it
    idle.recv("c4", at("10:00"))
    idle.recv("c5", at("10:00"))
    idle.merge("c5", "c4", at("12:00"))  # both expired at 11:00: closed before the merge
    idle.recv("c6", at("10:00"), "viber")
    idle.open("c6", at("11:00"))  # expired first, so not already_open: opens on viber
    idle.recv("c7", at("10:00"))
    idle.sent("c7", at("11:00"))  # after the closing: no conversation, no first response
    idle.recv("c8", at("10:00"))
    idle.sent("c8", at("10:30"), actor="automation")  # a bot's reply is activity too
    idle.recv("c8", at("11:29:59"))  # in time
    idle.event("message.received", "c3", at("13:00"), eid=quiet["event_id"],
               channel={"type": "sms"})  # a redelivery is not processed: closes nothing
    idle.expect(accepted=17, duplicate=1, no_open_conversation=1)

    swept = Story("s-sweep", settings={"inactivity_timeout_seconds": 60})
    swept.recv("c1", at("10:00"))  # only bonychat serve's own sweep can close it
    swept.expect(accepted=1)
    return [zone, hours, later, idle, swept]


def all_stories() -> list[Story]:
    return [*lifecycle_stories(), *dedupe_stories(), *envelope_stories(), *metrics_stories(),
            *service_level_stories(), *settings_stories()]


def expected_summary(stories: list[Story]) -> dict[str, Any]:
    rejected: dict[str, int] = {}
    for story in stories:
        for reason, count in story.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + count
    read = sum(1 for story in stories for line in story.lines if line.strip())
    return {"read": read, "accepted": sum(s.accepted for s in stories),
            "duplicate": sum(s.duplicate for s in stories), "rejected": rejected,
            "invalid": sum(s.invalid for s in stories)}
