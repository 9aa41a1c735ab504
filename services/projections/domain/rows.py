"""The per-conversation facts read model and the pure function that builds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.events import DomainEvent, decode_event
from schemas.moments import format_micros, to_micros
from schemas.stored import trusted_fields
from schemas.stored_rows import RowEvent, row_event
from services.projections.domain.durations import micros_to_seconds, seconds

#: ``(start_us, end_us) -> seconds`` of the interval inside the workspace's business
#: hours (CONTRACT §6.3); None: no schedule, the calendar duration
BusinessClock = Callable[[int, int], float]

ROW_FIELDS = (
    "conversation_id", "workspace_id", "contact_id", "channel", "status", "opened_at",
    "closed_at", "opened_by", "closed_by", "closed_by_actor", "assignee_id", "team_id",
    "category", "summary", "resolution_seconds", "messages_received", "messages_sent",
    "first_message_at", "first_response_at", "first_responder_id", "first_response_seconds",
    "first_response_business_seconds", "resolution_business_seconds", "last_activity_at",
    "recontact",
)


@dataclass(slots=True)
class ConversationRow:
    """One conversation as analytics sees it (times kept as epoch microseconds)."""

    conversation_id: str
    workspace_id: str
    contact_id: str
    channel: str | None
    opened_us: int
    opened_by: str
    closed_us: int | None = None
    closed_by: str | None = None
    closed_by_actor: str | None = None
    assignee_id: str | None = None
    team_id: str | None = None
    category: str | None = None
    summary: str | None = None
    messages_received: int = 0
    messages_sent: int = 0
    first_message_us: int | None = None
    first_response_us: int | None = None
    first_responder_id: str | None = None
    last_activity_us: int = 0
    recontact: bool = False

    def __post_init__(self) -> None:
        if not self.last_activity_us:
            self.last_activity_us = self.opened_us

    @property
    def status(self) -> str:
        return "open" if self.closed_us is None else "closed"

    @property
    def resolution_seconds(self) -> float | None:
        """Seconds from open to close, as shown (3 decimals); None while open."""
        if self.closed_us is None:
            return None
        return micros_to_seconds(self.closed_us - self.opened_us)

    def public(self, business: BusinessClock | None = None) -> dict[str, Any]:
        """The conversation row of CONTRACT §4 and §6.6, in its field order."""
        return {
            "conversation_id": self.conversation_id, "workspace_id": self.workspace_id,
            "contact_id": self.contact_id, "channel": self.channel, "status": self.status,
            "opened_at": format_micros(self.opened_us),
            "closed_at": format_micros(self.closed_us), "opened_by": self.opened_by,
            "closed_by": self.closed_by, "closed_by_actor": self.closed_by_actor,
            "assignee_id": self.assignee_id, "team_id": self.team_id,
            "category": self.category, "summary": self.summary,
            "resolution_seconds": self.resolution_seconds,
            "messages_received": self.messages_received, "messages_sent": self.messages_sent,
            **self.service_levels(business),
        }

    def service_levels(self, business: BusinessClock | None = None) -> dict[str, Any]:
        """The fields CONTRACT §6.6 adds to a row (``business``: the schedule's clock)."""
        first, response = self.first_message_us, self.first_response_us
        both = first is not None and response is not None
        return {
            "first_message_at": format_micros(first),
            "first_response_at": format_micros(response),
            "first_responder_id": self.first_responder_id,
            "first_response_seconds":
                micros_to_seconds(response - first) if both else None,  # type: ignore[operator]
            "first_response_business_seconds":
                business_seconds(first, response, business) if both else None,
            "resolution_business_seconds": None if self.closed_us is None
            else business_seconds(self.opened_us, self.closed_us, business),
            "last_activity_at": format_micros(self.last_activity_us),
            "recontact": bool(self.recontact),
        }


def business_seconds(start_us: int | None, end_us: int | None,
                     business: BusinessClock | None) -> float | None:
    """Shown seconds of ``start -> end`` inside business hours (calendar without a schedule)."""
    if start_us is None or end_us is None:
        return None
    if business is None or end_us <= start_us:
        return micros_to_seconds(end_us - start_us)
    return seconds(business(start_us, end_us))


def touch(row: ConversationRow, micros: int) -> None:
    """A message counted in the conversation: its last activity moves up to ``micros``."""
    row.last_activity_us = max(row.last_activity_us, micros)


def conversation_of(event: DomainEvent) -> str | None:
    """The conversation an event is about, if any."""
    return getattr(event, "conversation_id", None)


#: the events whose time the row keeps (as epoch microseconds)
_TIMED = frozenset({"ConversationOpened", "ConversationClosed", "MessageReceived",
                    "MessageSent"})
#: a stored event as :func:`stored_item` gives it: a :func:`~schemas.stored_rows.row_event`
#: struct, its JSON object (times of :data:`_TIMED` events in epoch microseconds), or
#: the decoded event when unsure
Item = RowEvent | dict[str, Any] | DomainEvent


def stored_item(state: bytes) -> Item:
    """A stored event for :func:`project_payload` (or, when unsure, :func:`project`).

    What ``encode_event`` writes for the current version is decoded by msgspec into
    its struct (:func:`~schemas.stored_rows.row_event`: ~0.8 µs, no dict); anything
    else goes :func:`trusted_payload`'s way (orjson and the key check, else the model).
    """
    event = row_event(state)
    return trusted_payload(state) if event is None else event


def trusted_payload(state: bytes) -> Item:
    """The stored event as a dict fit for :func:`project_payload`, or as a decoded event.

    For ``ConversationOpened``/``ConversationClosed`` and messages the dict's
    ``occurred_at`` is already epoch microseconds. The read path's way round
    building models (2-4 µs an event instead of 8-9).
    """
    payload = trusted_fields(state, _TIMED)
    if payload is None:
        return decode_event(state)
    return payload


def project(row: ConversationRow | None, event: DomainEvent) -> ConversationRow | None:
    """Apply one event to the row of its conversation; returns the (new) row.

    Events must arrive in aggregate order; an event for a conversation that has
    no row yet (other than its opening) is a corrupt stream and raises.
    """
    fields = event.__dict__  # a pydantic model keeps its field values here
    micros = to_micros(event.occurred_at) if fields["event_type"] in _TIMED else None
    return apply_fields(row, fields, micros)


def project_payload(row: ConversationRow | None, p: dict[str, Any] | RowEvent
                    ) -> ConversationRow | None:
    """:func:`project` for a :func:`trusted_payload` dict, or a
    :func:`~schemas.stored_rows.row_event` struct (the same rules: :func:`_apply`)."""
    return apply_fields(row, p, p["occurred_at"])


def apply_fields(row: ConversationRow | None, p: dict[str, Any] | RowEvent, micros: Any
                 ) -> ConversationRow | None:
    """The projection's rules, once: ``p`` the event's fields, ``micros`` its time.

    A message's time moves the row's last activity up (:func:`touch`'s rule, inline)."""
    kind = p["event_type"]
    if kind == "ConversationOpened":
        return ConversationRow(
            conversation_id=p["conversation_id"], workspace_id=p["workspace_id"],
            contact_id=p["contact_id"], channel=p["channel_type"],
            opened_us=micros, opened_by=p["opened_by"], recontact=p["recontact"])
    if row is None:
        if p.get("conversation_id") is None:
            return None
        raise LookupError(f"{kind} for unknown conversation {p['conversation_id']}")
    if kind == "MessageReceived":
        row.messages_received += 1
        row.last_activity_us = max(row.last_activity_us, micros)
        if row.first_message_us is None:
            row.first_message_us = micros
    elif kind == "MessageSent":
        row.messages_sent += 1
        row.last_activity_us = max(row.last_activity_us, micros)
        if p["first_response"]:
            row.first_response_us = micros
            row.first_responder_id = p["actor_id"]
    elif kind == "ConversationAssigned":
        row.assignee_id = p["assignee_id"]
        if p["team_given"]:
            row.team_id = p["team_id"]
    elif kind == "ConversationClosed":
        row.closed_us = micros
        row.closed_by = p["closed_by"]
        row.closed_by_actor = p["closed_by_actor"]
        row.category = p["category"]
        row.summary = p["summary"]
    return row
