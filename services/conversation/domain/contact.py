"""The contact aggregate: one per ``(workspace_id, contact_id)``.

It owns the contact's conversations over time and enforces CONTRACT §2: at most
one open conversation, the ways to open and close, assignment and merging; and
the service levels of §6: first responses, re-contacts and the closing after
inactivity (decided here, like every other rule, on both runtimes). State
changes only by recording an event and applying it; guards raise the named
errors of :mod:`.errors`. Imports nothing but the standard library and schemas.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from schemas.construct import maker
from schemas.events import (
    ContactAbsorbed,
    ContactMerged,
    ConversationAssigned,
    ConversationClosed,
    ConversationOpened,
    DomainEvent,
    MessageReceived,
    MessageSent,
)
from services.conversation.domain.errors import (
    AlreadyMerged,
    AlreadyOpen,
    InvalidMerge,
    NoOpenConversation,
    WelcomeNotSupported,
)
from services.conversation.domain.ids import NAMESPACE, aggregate_id, name_uuid
from services.conversation.domain.sources import Expiry, Source

__all__ = ["NAMESPACE", "RECONTACT_WINDOW", "WELCOME_CHANNELS", "Contact", "Expiry", "Source",
           "aggregate_id", "merge", "name_uuid"]

WELCOME_CHANNELS: Final = frozenset({"facebook", "viber"})
#: what every event is given by :meth:`Contact._record`, first and in this order
_COMMON: Final = ("event_id", "workspace_id", "contact_id", "aggregate_version", "occurred_at",
                  "source_event_id")


def _maker(cls: type[DomainEvent], *names: str) -> Callable[..., DomainEvent]:
    """Builds a ``cls`` from the :data:`_COMMON` values and then those of ``names``
    (``construct.maker``: no validation, one dict display): its keys the defaults
    first, then the common fields, then ``names``: the order of the stored JSON."""
    return maker(cls, (*_COMMON, *names), every_field=True)


# one per kind of event the aggregate records, with the names it is given in that order
_OPENED: Final = _maker(ConversationOpened, "conversation_id", "opened_by", "channel_type",
                        "channel_id", "actor_id", "recontact")
_RECEIVED: Final = _maker(MessageReceived, "conversation_id", "message_id")
_SENT: Final = _maker(MessageSent, "conversation_id", "actor_type", "actor_id", "first_response")
_CLOSED: Final = _maker(ConversationClosed, "conversation_id", "closed_by", "closed_by_actor",
                        "category", "summary")
#: closed for inactivity or by a merge: no actor (closed_by_actor keeps its default, None)
_CLOSED_BY_NO_ACTOR: Final = _maker(ConversationClosed, "conversation_id", "closed_by")
_ASSIGNED: Final = _maker(ConversationAssigned, "conversation_id", "assignee_id", "team_given",
                          "team_id", "actor_type", "actor_id")
_ABSORBED: Final = _maker(ContactAbsorbed, "secondary_contact_id", "closed_at")
_MERGED: Final = _maker(ContactMerged, "primary_contact_id", "secondary_contact_id")
#: a conversation opened within this long after another one closed is a re-contact
RECONTACT_WINDOW: Final = timedelta(hours=24)


class Contact:
    """Event-sourced state of one contact."""

    __slots__ = (
        "_namespace",
        "closed_times",
        "contact_id",
        "conversation_count",
        "id",
        "last_activity",
        "last_channel",
        "merged_into",
        "open_conversation_id",
        "pending",
        "received",
        "responded",
        "version",
        "workspace_id",
    )

    def __init__(self, workspace_id: str, contact_id: str) -> None:
        self.workspace_id = workspace_id
        self.contact_id = contact_id
        self.id = aggregate_id(workspace_id, contact_id)
        self._namespace = self.id.bytes  # of the event and conversation ids it names
        self.version = 0
        self.conversation_count = 0
        self.open_conversation_id: str | None = None
        self.last_channel: str | None = None
        self.merged_into: str | None = None
        self.pending: list[DomainEvent] = []
        #: the open conversation's latest activity (opening or message), by occurred_at
        self.last_activity: datetime | None = None
        #: the open conversation has an inbound message / a first human response
        self.received = False
        self.responded = False
        #: sorted closing times of this contact's conversations (absorbed ones
        #: included), other than by merge: what makes a re-contact (§6.5)
        self.closed_times: list[datetime] = []

    # ------------------------------------------------------------------ state
    @classmethod
    def replay(cls, workspace_id: str, contact_id: str, events: list[DomainEvent]) -> Contact:
        contact = cls(workspace_id, contact_id)
        for event in events:
            contact.apply(event)
        return contact

    def apply(self, event: DomainEvent) -> None:
        """Mutate state from one event (used live and on replay).

        By the event's exact class: the event classes have no subclasses, and a
        pydantic class's ``isinstance`` that does not match costs a call through its
        metaclass (~75 ns; once per event and more on the hot path)."""
        self.version = event.aggregate_version
        kind = type(event)
        if kind is MessageReceived or kind is MessageSent:
            last = self.last_activity
            if last is None or event.occurred_at > last:
                self.last_activity = event.occurred_at
            if kind is MessageReceived:
                self.received = True
            elif event.first_response:  # type: ignore[attr-defined]
                self.responded = True
        elif type(event) is ConversationOpened:
            self.conversation_count += 1
            self.open_conversation_id = event.conversation_id
            self.last_channel = event.channel_type
            self.last_activity = event.occurred_at
            self.received = self.responded = False
        elif type(event) is ConversationClosed:
            self.open_conversation_id = None
            self.last_activity = None
            if event.closed_by != "merge":
                insort(self.closed_times, event.occurred_at)
        elif type(event) is ContactAbsorbed:
            for moment in event.closed_at:
                insort(self.closed_times, moment)
        elif type(event) is ContactMerged:
            self.merged_into = event.primary_contact_id

    def collect(self) -> list[DomainEvent]:
        """Hand over the events recorded since the last call."""
        events, self.pending = self.pending, []
        return events

    def _record(self, make: Callable[..., DomainEvent], source: Source, at: datetime,
                *fields: Any) -> None:
        """Record the next event, built by ``make`` (one of this module's makers) from
        the common values and ``fields`` (its names, in their order), at ``at``."""
        # built from validated commands: no second validation, in the stored JSON's
        # key order (defaults, then the common fields, then the maker's names)
        version = self.version + 1
        event = make(name_uuid(self._namespace, str(version)), self.workspace_id,
                     self.contact_id, version, at, source.event_id, *fields)
        self.apply(event)
        self.pending.append(event)

    # ----------------------------------------------------------------- guards
    @property
    def is_open(self) -> bool:
        return self.open_conversation_id is not None

    def check_none_open(self) -> None:
        if self.open_conversation_id is not None:
            raise AlreadyOpen(f"conversation {self.open_conversation_id} is open")

    def check_one_open(self) -> str:
        if self.open_conversation_id is None:
            raise NoOpenConversation(f"contact {self.contact_id} has no open conversation")
        return self.open_conversation_id

    def is_recontact(self, opened_at: datetime) -> bool:
        """Another conversation closed (not by merge) in the 24 h up to ``opened_at``."""
        times = self.closed_times
        if not times:
            return False
        try:
            since = opened_at - RECONTACT_WINDOW
        except OverflowError:  # within a day of year 1: the window starts at the start
            since = times[0]
        first = bisect_left(times, since)
        return first < len(times) and times[first] <= opened_at

    def expires_at(self, timeout_seconds: int | None) -> datetime | None:
        """When the open conversation closes for inactivity (None: it does not)."""
        if timeout_seconds is None or self.last_activity is None:
            return None
        try:
            return self.last_activity + timedelta(seconds=timeout_seconds)
        except OverflowError:  # after year 9999: never
            return None

    # -------------------------------------------------------------- decisions
    def expire(self, source: Source, timeout_seconds: int | None) -> None:
        """Close the open conversation for inactivity if it expired by ``source``'s time.

        Recorded before ``source`` itself is decided (CONTRACT §6.4); the closing
        happens at last activity + timeout, never at the time it is noticed.
        """
        if timeout_seconds is None or self.last_activity is None:
            return  # what expires_at says first, without the call (every command asks)
        deadline = self.expires_at(timeout_seconds)
        if deadline is None or source.occurred_at < deadline:
            return
        # no actor closes for inactivity: closed_by_actor keeps its default, None
        self._record(_CLOSED_BY_NO_ACTOR, source, deadline, self.open_conversation_id,
                     "inactivity")

    def _open(self, source: Source, opened_by: str, channel_type: str | None,
              channel_id: str | None) -> None:
        conversation_id = name_uuid(self._namespace,
                                    f"conversation:{self.conversation_count + 1}")
        at = source.occurred_at
        self._record(_OPENED, source, at, conversation_id, opened_by, channel_type, channel_id,
                     source.actor_id, self.is_recontact(at))

    def receive_message(self, source: Source, channel_type: str, channel_id: str | None,
                        message_id: str | None) -> None:
        """An inbound message opens a conversation if none is open, then counts in it."""
        if self.open_conversation_id is None:
            self._open(source, "contact", channel_type, channel_id)
        self._record(_RECEIVED, source, source.occurred_at, self.open_conversation_id,
                     message_id)

    def send_message(self, source: Source) -> None:
        """An outbound message never opens; it counts only if a conversation is open."""
        if self.open_conversation_id is not None:
            actor_type = source.actor_type or "user"
            first = actor_type == "user" and self.received and not self.responded
            self._record(_SENT, source, source.occurred_at, self.open_conversation_id,
                         actor_type, source.actor_id, first)

    def welcome(self, source: Source, channel_type: str, channel_id: str | None) -> None:
        if channel_type not in WELCOME_CHANNELS:
            raise WelcomeNotSupported(f"channel {channel_type} has no welcome events")
        self.check_none_open()
        self._open(source, "welcome", channel_type, channel_id)

    def open(self, source: Source, opened_by: str, channel_type: str | None,
             channel_id: str | None) -> None:
        """Open by an agent, automation or bot; channel falls back to the last one."""
        self.check_none_open()
        if channel_type is None:
            channel_type, channel_id = self.last_channel, None
        self._open(source, opened_by, channel_type, channel_id)

    def close(self, source: Source, closed_by: str, category: str | None,
              summary: str | None) -> None:
        conversation_id = self.check_one_open()
        self._record(_CLOSED, source, source.occurred_at, conversation_id, closed_by,
                     source.actor_id, category, summary)

    def assign(self, source: Source, assignee_id: str | None, team_given: bool,
               team_id: str | None) -> None:
        conversation_id = self.check_one_open()
        self._record(_ASSIGNED, source, source.occurred_at, conversation_id, assignee_id,
                     team_given, team_id, source.actor_type, source.actor_id)


def merge(primary: Contact, secondary: Contact, source: Source) -> None:
    """Fold ``secondary`` into ``primary`` (already resolved to its survivor).

    The secondary's open conversation is closed by ``merge`` and the secondary
    records that it now lives on as the primary; the primary records the
    secondary's closing times (its re-contact history, CONTRACT §6.5).
    """
    if secondary.merged_into is not None:
        raise AlreadyMerged(f"{secondary.contact_id} was merged into {secondary.merged_into}")
    if secondary.contact_id == primary.contact_id:
        raise InvalidMerge(f"{secondary.contact_id} cannot be merged into itself")
    at = source.occurred_at
    primary._record(_ABSORBED, source, at, secondary.contact_id, tuple(secondary.closed_times))
    if secondary.open_conversation_id is not None:  # closed_by_actor: None (default)
        secondary._record(_CLOSED_BY_NO_ACTOR, source, at, secondary.open_conversation_id,
                          "merge")
    secondary._record(_MERGED, source, at, primary.contact_id, secondary.contact_id)
