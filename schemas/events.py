"""Domain events of the contact aggregate: immutable, past tense, versioned.

These are what the event store keeps, what projections read and what analytics
consumers receive on ``bonychat.conversation.events.v1``. Every event has a
stable ``event_id`` (derived from its aggregate and version, so a replay or a
redelivery produces the same id) and a ``schema_version``. Stored events of an
older version are upgraded on read by the upcasters registered in
:data:`UPCASTERS`.

Schema version 2 (service levels, CONTRACT §6) added ``recontact`` to
``ConversationOpened``, ``first_response`` to ``MessageSent``, ``inactivity`` to
``ConversationClosed.closed_by``, and the events ``ContactAbsorbed`` (the
primary's side of a merge) and ``WorkspaceSettingsChanged``. A version 1 event
reads as version 2 with the new fields at their defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.workspace import BusinessInterval, WorkspaceSettings

OpenedBy = Literal["contact", "welcome", "user", "automation", "dialogflow"]
ClosedBy = Literal["user", "automation", "dialogflow", "merge", "inactivity"]


class DomainEvent(BaseModel):
    """Fields every domain event carries."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[2] = 2
    event_id: str
    workspace_id: str
    contact_id: str
    aggregate_version: int
    occurred_at: datetime
    source_event_id: str


class ConversationOpened(DomainEvent):
    event_type: Literal["ConversationOpened"] = "ConversationOpened"
    conversation_id: str
    opened_by: OpenedBy
    channel_type: str | None = None
    channel_id: str | None = None
    actor_id: str | None = None
    #: the contact had another conversation closed (not by merge) in the 24 h up to
    #: this opening (CONTRACT §6.5)
    recontact: bool = False


class MessageReceived(DomainEvent):
    event_type: Literal["MessageReceived"] = "MessageReceived"
    conversation_id: str
    message_id: str | None = None


class MessageSent(DomainEvent):
    event_type: Literal["MessageSent"] = "MessageSent"
    conversation_id: str
    actor_type: str
    actor_id: str | None = None
    #: the conversation's first human (``user``) reply after its first inbound
    #: message (CONTRACT §6.2)
    first_response: bool = False


class ConversationAssigned(DomainEvent):
    event_type: Literal["ConversationAssigned"] = "ConversationAssigned"
    conversation_id: str
    assignee_id: str | None
    team_given: bool = False
    team_id: str | None = None
    actor_type: str | None = None
    actor_id: str | None = None


class ConversationClosed(DomainEvent):
    event_type: Literal["ConversationClosed"] = "ConversationClosed"
    conversation_id: str
    closed_by: ClosedBy
    closed_by_actor: str | None = None
    category: str | None = None
    summary: str | None = None


class ContactMerged(DomainEvent):
    """The aggregate's contact (the secondary) now lives on as the primary."""

    event_type: Literal["ContactMerged"] = "ContactMerged"
    primary_contact_id: str
    secondary_contact_id: str


class ContactAbsorbed(DomainEvent):
    """The aggregate's contact (the primary) took over a merged secondary's history.

    ``closed_at``: when the secondary's conversations were closed (other than by
    merge), so re-contacts of the primary see them (CONTRACT §6.5).
    """

    event_type: Literal["ContactAbsorbed"] = "ContactAbsorbed"
    secondary_contact_id: str
    closed_at: tuple[datetime, ...] = ()


class WorkspaceSettingsChanged(DomainEvent):
    """A workspace's settings (CONTRACT §6.1) as they are after a change.

    Recorded by the workspace's settings aggregate, whose ``contact_id`` is the
    empty string (no contact has that id), so its key on the topic is
    ``workspace_id:``. ``changed`` names the settings the change gave (a
    ``null`` reset included).
    """

    event_type: Literal["WorkspaceSettingsChanged"] = "WorkspaceSettingsChanged"
    timezone: str = "UTC"
    business_hours: tuple[BusinessInterval, ...] | None = None
    inactivity_timeout_seconds: int | None = None
    changed: tuple[str, ...] = ()

    def settings(self) -> WorkspaceSettings:
        """The settings object of CONTRACT §6.1 this change leaves in force.

        Validated again: a stored event may have been decoded without validation.
        """
        hours = self.business_hours
        return WorkspaceSettings.model_validate({
            "timezone": self.timezone,
            "business_hours": None if hours is None else [
                h.model_dump() if isinstance(h, BaseModel) else h for h in hours],
            "inactivity_timeout_seconds": self.inactivity_timeout_seconds})


AnyDomainEvent = Annotated[
    ConversationOpened | MessageReceived | MessageSent | ConversationAssigned
    | ConversationClosed | ContactMerged | ContactAbsorbed | WorkspaceSettingsChanged,
    Field(discriminator="event_type"),
]
EVENT_CLASSES: dict[str, type[DomainEvent]] = {
    cls.model_fields["event_type"].default: cls
    for cls in (ConversationOpened, MessageReceived, MessageSent, ConversationAssigned,
                ConversationClosed, ContactMerged, ContactAbsorbed, WorkspaceSettingsChanged)
}
CURRENT_VERSION = 2
_ADAPTER: TypeAdapter[AnyDomainEvent] = TypeAdapter(AnyDomainEvent)

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
#: (event_type, from_version) -> function returning the payload at from_version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def _v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 2 only added fields with defaults: a v1 payload is already valid."""
    return dict(payload)


for _kind in ("ConversationOpened", "MessageReceived", "MessageSent", "ConversationAssigned",
              "ConversationClosed", "ContactMerged"):
    UPCASTERS[(_kind, 1)] = _v1_to_v2


def upcast(payload: dict[str, Any]) -> dict[str, Any]:
    """Bring a stored payload of any older schema version up to the current one."""
    version = int(payload.get("schema_version", 1))
    kind = str(payload.get("event_type"))
    while version < CURRENT_VERSION:
        step = UPCASTERS.get((kind, version))
        if step is None:
            raise ValueError(f"no upcaster for {kind} v{version}")
        payload = step(payload)
        version += 1
        payload["schema_version"] = version
    return payload


def _plain(annotation: object) -> bool:
    """Whether orjson writes every value of this type exactly as pydantic does.

    Text, integers, booleans, ``None``, and tuples, unions or literals of those.
    Not datetimes (orjson rounds an offset with seconds to the minute, pydantic
    drops the seconds: ``occurred_at`` is checked for each event instead), nor
    models (``BusinessInterval``), nor anything else.
    """
    if annotation in (str, int, bool, type(None)):
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return all(type(arg) in (str, int) for arg in get_args(annotation))
    if origin in (tuple, UnionType, Union):
        return all(arg is Ellipsis or _plain(arg) for arg in get_args(annotation))
    return False


#: the classes whose JSON orjson writes from the model's dict when ``occurred_at``
#: is in UTC (the others, and any other time zone: pydantic)
_ORJSON_CLASSES: frozenset[type[DomainEvent]] = frozenset(
    cls for cls in EVENT_CLASSES.values()
    if all(_plain(field.annotation) for name, field in cls.model_fields.items()
           if name != "occurred_at"))
_dumps = orjson.dumps
_UTC_Z = orjson.OPT_UTC_Z


def encode_event(event: DomainEvent) -> bytes:
    """Serialise an event to the JSON bytes stored and published.

    pydantic writes a model's fields in the order of its dict. For the classes
    of plain fields, with ``occurred_at`` in UTC (every event the domain records:
    commands carry UTC), orjson writes the same dict to the same bytes about
    three times faster (``tests/unit/test_event_json.py`` checks it on generated
    events). Anything orjson refuses (an integer over 64 bits, a lone
    surrogate) goes to pydantic, which writes it or raises as it always did.
    """
    values = event.__dict__
    if type(event) in _ORJSON_CLASSES and values["occurred_at"].tzinfo is UTC:
        try:
            return _exact(_dumps(values, option=_UTC_Z))
        except TypeError:
            pass
    return event.__pydantic_serializer__.to_json(event)


def encode_events(events: Sequence[DomainEvent]) -> list[bytes]:
    """Each of ``events`` serialised by :func:`encode_event`, in order (a batch's
    states, ``pg_recorder.event_columns``)."""
    return list(map(encode_event, events))


def _exact(data: bytes) -> bytes:
    """A copy of ``data`` in an object of its own size (~0.13 µs for an event).

    orjson writes into a 1 KiB object that the C allocator then shrinks in place:
    an event's JSON kept while its batch commits, written on one thread and
    freed on another (the Kafka conversation service), left the allocator's
    per-thread heaps fragmented: +100-160 MiB peak RSS, and the page faults
    cost more CPU than orjson saved (``bench/encode_rss.py``). A right-sized
    copy is freed at once; the copy is Python's own small-object memory.
    """
    return bytes(memoryview(data))


def decode_event(data: bytes | str) -> DomainEvent:
    """Parse stored or published JSON into the current event class (upcasting first)."""
    payload = orjson.loads(data)
    if payload.get("schema_version", 1) != CURRENT_VERSION:
        payload = upcast(payload)
    return _ADAPTER.validate_python(payload)


def event_type_of(event: DomainEvent) -> str:
    return str(getattr(event, "event_type"))  # noqa: B009
