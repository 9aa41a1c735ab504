"""Envelope builders and an in-memory world (unit of work + projection on fakes)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fakes import FakeEventStore, FakeReadModelStore

from services.conversation.application.processor import BatchResult
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.conversation.domain.contact import Contact, aggregate_id
from services.ingest.domain.normalise import Invalid, parse
from services.projections.application.projector import ConversationProjection

BASE = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
OMIT: Any = object()
_ids = itertools.count(1)

DEFAULT_ACTOR: dict[str, tuple[str, str | None] | None] = {
    "message.received": None,
    "message.sent": ("user", "agent-1"),
    "welcome": None,
    "conversation.open": ("user", "agent-1"),
    "conversation.close": ("user", "agent-1"),
    "conversation.assign": ("user", "agent-1"),
    "dialogflow.response": None,
    "contact.merge": None,
}
DEFAULT_CHANNEL = {"message.received": "whatsapp", "welcome": "facebook"}


def iso(minutes: float = 0, base: datetime = BASE) -> str:
    """BASE + ``minutes`` as RFC 3339 UTC with ``Z``."""
    moment = base + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{moment.microsecond:06d}Z" if moment.microsecond else "Z")


def ev(kind: str, contact: str = "c1", t: float = 0, *, ws: str = "ws1",
       event_id: str | None = None, channel: Any = OMIT, actor: Any = OMIT,
       data: Any = OMIT, **extra: Any) -> dict[str, Any]:
    """A valid envelope of ``kind`` (defaults fill what the type requires).

    ``channel``/``actor`` take a type name, a ``(type, id)`` tuple, a dict, or
    ``None`` to leave the field out.
    """
    envelope: dict[str, Any] = {
        "event_id": event_id or f"evt-{next(_ids)}", "type": kind, "workspace_id": ws,
        "contact_id": contact, "occurred_at": iso(t),
    }
    channel = DEFAULT_CHANNEL.get(kind) if channel is OMIT else channel
    if channel is not None:
        envelope["channel"] = channel if isinstance(channel, dict) else {"type": channel}
    actor = DEFAULT_ACTOR.get(kind) if actor is OMIT else actor
    if isinstance(actor, str):
        actor = (actor, None)
    if isinstance(actor, tuple):
        envelope["actor"] = {"type": actor[0], **({"id": actor[1]} if actor[1] else {})}
    elif isinstance(actor, dict):
        envelope["actor"] = actor
    if data is OMIT:
        data = {"assignee_id": "agent-2"} if kind == "conversation.assign" else None
    if data is not None:
        envelope["data"] = data
    envelope.update(extra)
    return envelope


def merge(primary: str, secondary: str, t: float = 0, **kw: Any) -> dict[str, Any]:
    return ev("contact.merge", primary, t, data={"secondary_contact_id": secondary}, **kw)


def line(envelope: dict[str, Any] | str) -> str:
    return envelope if isinstance(envelope, str) else orjson.dumps(envelope).decode()


class World:
    """The conversation core on fakes: send envelopes, look at outcomes and rows."""

    def __init__(self) -> None:
        self.events = FakeEventStore()
        self.read_models = FakeReadModelStore()
        self.uow = BatchUnitOfWork(self.events)
        self.projection = ConversationProjection(self.read_models)
        self.last: BatchResult | None = None

    def send(self, *envelopes: dict[str, Any] | str) -> list[str]:
        """Process one batch; return each item's outcome.

        ``accepted``, ``duplicate``, ``invalid`` or ``rejected:REASON``.
        """
        items = [parse(line(e)) for e in envelopes]
        result = self.last = self.uow.process(items)
        self.projection.catch_up(self.events)
        outcomes = iter(result.outcomes)
        pending = next(outcomes, None)
        found: list[str] = []
        for item in items:
            if isinstance(item, Invalid):
                found.append("invalid")
            elif pending is not None and (pending.workspace_id, pending.event_id) == item.dedup_key:
                found.append(pending.outcome if pending.reason is None
                             else f"rejected:{pending.reason}")
                pending = next(outcomes, None)
            else:
                found.append("duplicate")
        return found

    def one(self, envelope: dict[str, Any] | str) -> str:
        return self.send(envelope)[0]

    def rows(self, ws: str = "ws1", contact: str | None = None,
             status: str | None = None) -> list[dict[str, Any]]:
        return [r.public() for r in self.read_models.conversations(ws, contact, status)]

    def row(self, ws: str = "ws1", contact: str | None = None) -> dict[str, Any]:
        """The only conversation (of ``contact``) in ``ws``."""
        rows = self.rows(ws, contact)
        assert len(rows) == 1, rows
        return rows[0]

    def contact(self, contact_id: str, ws: str = "ws1") -> Contact:
        """The aggregate rebuilt from the store (not the processor's cache)."""
        return Contact.replay(ws, contact_id, self.events.load(aggregate_id(ws, contact_id)))
