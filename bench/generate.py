"""Deterministic generator of realistic gateway envelopes (JSONL).

Contacts in several workspaces talk over several channels; agents, automations
and a Dialogflow bot answer, assign and close; some contacts are merged; a
small share of lines are invalid or redelivered duplicates. Welcome events come
from Facebook and Viber, as in real traffic, save a few sent on other channels
(``WRONG_WELCOME_RATE``) that show the ``welcome_not_supported`` rejection. Used by ``make run``,
the tests and the benchmarks.

    python -m bench.generate --events 1000000 --contacts 100000 -o events.jsonl
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import orjson

CHANNELS = ("whatsapp", "facebook", "instagram", "webchat", "telegram", "viber", "email", "sms")
#: the channels whose gateways send ``welcome`` (a contact pressed "Get started")
WELCOME_CHANNELS = frozenset({"facebook", "viber"})
#: share of the other channels' would-be welcomes still sent as one (a misconfigured
#: gateway), to show the ``welcome_not_supported`` rejection
WRONG_WELCOME_RATE = 0.04
CATEGORIES = ("billing", "shipping", "returns", "technical", "other")
START = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Generator:
    """Yields envelope dicts (or raw invalid strings) in arrival order."""

    def __init__(self, *, events: int, contacts: int, workspaces: int = 3, seed: int = 7,
                 invalid_rate: float = 0.002, duplicate_rate: float = 0.003,
                 merge_rate: float = 0.002, seconds_per_event: float = 2.5) -> None:
        self.rng = random.Random(seed)
        self.events = events
        self.contacts = contacts
        self.workspaces = [f"ws{i + 1}" for i in range(workspaces)]
        self.invalid_rate = invalid_rate
        self.duplicate_rate = duplicate_rate
        self.merge_rate = merge_rate
        self.step = seconds_per_event
        self.open: dict[int, bool] = {}
        self.channel: dict[int, str] = {}
        self.recent: list[dict[str, Any]] = []
        self.active: list[int] = []

    def _contact(self, index: int) -> tuple[str, str]:
        return self.workspaces[index % len(self.workspaces)], f"c{index:07d}"

    def __iter__(self) -> Iterator[dict[str, Any] | str]:
        rng = self.rng
        clock = START
        for n in range(self.events):
            clock += timedelta(seconds=rng.expovariate(1 / self.step))
            roll = rng.random()
            if roll < self.invalid_rate:
                yield self._invalid(n, clock)
                continue
            if roll < self.invalid_rate + self.duplicate_rate and self.recent:
                yield rng.choice(self.recent)
                continue
            envelope = self._event(n, clock)
            self.recent.append(envelope)
            if len(self.recent) > 50:
                self.recent.pop(0)
            yield envelope

    def _invalid(self, n: int, clock: datetime) -> dict[str, Any] | str:
        kind = self.rng.randrange(4)
        if kind == 0:
            return '{"event_id": "broken-' + str(n) + '", "type": '
        base: dict[str, Any] = {"event_id": f"bad-{n}", "type": "message.received",
                                "workspace_id": "ws1", "contact_id": "c0000001",
                                "occurred_at": _ts(clock), "channel": {"type": "whatsapp"}}
        if kind == 1:
            base["occurred_at"] = clock.strftime("%Y-%m-%dT%H:%M:%S")  # no offset
        elif kind == 2:
            base["type"] = "message.teleported"
        else:
            base["channel"] = {"type": "carrier-pigeon"}
        return base

    def _event(self, n: int, clock: datetime) -> dict[str, Any]:
        rng = self.rng
        index = self._pick()
        workspace, contact = self._contact(index)
        env: dict[str, Any] = {"event_id": f"evt-{n:09d}", "workspace_id": workspace,
                               "contact_id": contact, "occurred_at": _ts(clock)}
        agent = {"type": "user", "id": f"agent-{workspace}-{rng.randrange(12)}"}
        if rng.random() < self.merge_rate:
            other = rng.randrange(len(self.workspaces), self.contacts, len(self.workspaces))
            other = other - other % len(self.workspaces) + index % len(self.workspaces)
            env.update(type="contact.merge", data={"secondary_contact_id": self._contact(other)[1]})
            self.open.pop(other, None)
            return env
        if not self.open.get(index):
            return self._opening(index, env, agent)
        return self._during(index, env, agent)

    def _pick(self) -> int:
        """Mostly a contact in an open conversation (replies come in minutes), else anyone."""
        rng = self.rng
        if self.active and rng.random() < 0.8:
            # favour recently opened conversations: most are resolved within the hour
            slot = max(0, len(self.active) - 1 - int(rng.expovariate(1 / 40)))
            index = self.active[slot]
            if self.open.get(index):
                return index
            self.active[slot] = self.active[-1]
            self.active.pop()
        return rng.randrange(self.contacts)

    def _opening(self, index: int, env: dict[str, Any], agent: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        channel = self.channel.setdefault(index, rng.choice(CHANNELS))
        roll = rng.random()
        welcome = roll >= 0.6 if channel in WELCOME_CHANNELS else (
            roll >= 0.75 and rng.random() < WRONG_WELCOME_RATE)
        if welcome and roll < 0.85:
            env.update(type="welcome", channel={"type": channel})  # rejected off fb/viber
        elif roll < 0.85:
            env.update(type="message.received", channel={"type": channel},
                       data={"message_id": f"m{env['event_id']}", "text": "hello"})
        elif roll < 0.95:
            env.update(type="conversation.open", actor=agent)
        else:
            env.update(type="conversation.close", actor=agent)  # rejected: none open
            return env
        if env["type"] != "welcome" or channel in ("facebook", "viber"):
            self.open[index] = True
            self.active.append(index)
        return env

    def _during(self, index: int, env: dict[str, Any], agent: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        roll = rng.random()
        workspace = env["workspace_id"]
        if roll < 0.35:
            env.update(type="message.received", channel={"type": self.channel[index]},
                       data={"text": "more"})
        elif roll < 0.62:
            env.update(type="message.sent", actor=agent, data={"text": "reply"})
        elif roll < 0.74:
            env.update(type="conversation.assign", actor=agent,
                       data={"assignee_id": agent["id"], "team_id": f"team-{workspace}-"
                             f"{rng.randrange(3)}"})
        elif roll < 0.80:
            env.update(type="dialogflow.response", actor={"type": "dialogflow"},
                       data={"parameters": {"RB_MARKDONE": "true"}})
            self.open[index] = False
        elif roll < 0.84 and self.channel[index] in WELCOME_CHANNELS:
            env.update(type="welcome", channel={"type": self.channel[index]})  # already_open
        elif roll < 0.84:
            env.update(type="message.received", channel={"type": self.channel[index]},
                       data={"text": "still there?"})
        else:
            closer = agent if rng.random() < 0.8 else {"type": "automation", "id": "wf-1"}
            env.update(type="conversation.close", actor=closer,
                       data={"category": rng.choice(CATEGORIES)})
            self.open[index] = False
        return env


def write(gen: Generator, out: IO[bytes]) -> int:
    count = 0
    for item in gen:
        line = item.encode() if isinstance(item, str) else orjson.dumps(item)
        out.write(line + b"\n")
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--contacts", type=int, default=2_000)
    parser.add_argument("--workspaces", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("-o", "--output", default="-")
    args = parser.parse_args(argv)
    gen = Generator(events=args.events, contacts=args.contacts, workspaces=args.workspaces,
                    seed=args.seed)
    if args.output == "-":
        write(gen, sys.stdout.buffer)
    else:
        with open(args.output, "wb") as handle:
            write(gen, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
