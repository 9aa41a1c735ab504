"""Stored events decoded by msgspec for a bulk rebuild of the rows (``bonychat replay``).

``rows.trusted_payload`` (orjson into a dict, a check of its keys, the time) costs
about 3 µs of a replay worker's ~7 per event. :func:`row_event` decodes the same
bytes with msgspec into a struct per event type instead (0.7-0.9 µs), built from
the event models' fields when this module is imported, so the models stay the one
definition:

- every field of the class is required and no other key is allowed (the rule of
  :func:`schemas.stored.trusted_fields`: what ``encode_event`` writes), the type
  is the ``event_type`` tag and ``schema_version`` must be the current one;
- a field of a simple type (``str``, ``str | None``, ``bool``, ``int``, a
  ``Literal``) must have that type; ``occurred_at`` must be the UTC text
  ``encode_event`` writes (:func:`~schemas.moments.utc_micros`), and comes out in
  epoch microseconds; other fields are not read by the rows and are left as JSON
  gave them.

Anything else gives None, and the caller takes the general way
(``trusted_payload``, which decodes and upcasts what it cannot trust). So what
:func:`row_event` accepts, ``trusted_payload`` trusts too, with the same values for
every field the rows read (``tests/unit/test_stored_rows.py`` checks both on the
stored events of random lifecycles and on damaged ones). A struct reads like the
trusted dict (``event["conversation_id"]``, ``event.get(...)``), so the one
projection function (``rows._apply``) serves both.
"""

from __future__ import annotations

from datetime import datetime
from functools import reduce
from operator import or_
from typing import Annotated, Any, ClassVar, Final, Literal, get_origin

import msgspec

from schemas.events import CURRENT_VERSION, EVENT_CLASSES
from schemas.moments import utc_micros

_INT64: Final = msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)  # orjson's range


def _type_of(field: str, annotation: Any) -> Any:
    """The msgspec type of a field: its own when simple, else Any (the rows never read it)."""
    if field == "schema_version":
        return Literal[CURRENT_VERSION]
    if field == "occurred_at":
        return str
    if annotation is int:
        return Annotated[int, _INT64]
    if annotation in (str, str | None, bool) or get_origin(annotation) is Literal:
        return annotation
    if annotation is datetime:
        raise TypeError(f"{field}: a second timestamp; teach schemas.stored_rows")
    return Any


class RowEvent(msgspec.Struct):
    """What every struct of :func:`row_event` has: ``event_type`` (its class's tag) and
    ``conversation_id`` (None, as a class attribute, for event types without one)."""

    event_type: ClassVar[str] = ""
    conversation_id: ClassVar[Any] = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


def _struct(name: str) -> type[RowEvent]:
    cls = EVENT_CLASSES[name]
    fields = [(field, _type_of(field, info.annotation))
              for field, info in cls.model_fields.items() if field != "event_type"]
    # object.__getattribute__ reads a field in C: the projection's p["..."] at no cost
    return msgspec.defstruct(  # type: ignore[return-value]
        name, fields, bases=(RowEvent,), tag_field="event_type", tag=name,
        forbid_unknown_fields=True,
        namespace={"event_type": name, "__getitem__": object.__getattribute__})


#: event type -> its struct (those without a conversation_id have the class's None)
STRUCTS: Final = {name: _struct(name) for name in EVENT_CLASSES}
_decode: Final = msgspec.json.Decoder(reduce(or_, STRUCTS.values())).decode


def row_event(state: bytes) -> RowEvent | None:
    """The stored event as a struct, ``occurred_at`` in epoch microseconds; None when
    it is not exactly what ``encode_event`` writes for the current version."""
    try:
        event: Any = _decode(state)
    except msgspec.MsgspecError:
        return None
    micros = utc_micros(event.occurred_at)
    if micros is None:
        return None
    event.occurred_at = micros
    return event  # type: ignore[no-any-return]
