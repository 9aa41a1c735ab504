"""The envelope check of the hot path, derived from :class:`GatewayEnvelope`.

:class:`~schemas.envelope.GatewayEnvelope` (pydantic) is the contract: the JSON
Schema files, the API models and every dead-letter reason come from it. Running
it costs about 4 µs per event, most of it building and validating model objects
we throw away. :func:`fast_values` checks the same things on the decoded JSON
object directly (about 1 µs) and only ever *accepts*: whatever it is unsure of
(anything it would refuse, NUL characters, an odd type) it hands back as
``None``, and the caller then runs the pydantic model, which gives the verdict
and the reason exactly as before. So a reason can never differ, and the fast
path may only accept what the model accepts, with the same values
(tests/unit/test_fast_path.py proves it on every input the envelope fuzz suite
generates).

Its limits (lengths, the workspace pattern, the allowed literals) are read from
the model's fields when this module is imported, and :func:`_derive` refuses a
model it does not understand (a new field, a new kind of constraint): the model
stays the one definition, and changing it cannot silently leave this behind.
The per-type rules are the model's own function (:func:`check_rules`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, Literal, get_args, get_origin

from annotated_types import MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from schemas.envelope import Actor, Channel, GatewayEnvelope, check_rules, parse_rfc3339

#: what :func:`fast_values` gives for an accepted envelope: event_id, type,
#: workspace_id, contact_id, occurred_at (UTC), channel type and id, actor type and id, data
Values = tuple[str, str, str, str, datetime, str | None, str | None, str | None, str | None,
               dict[str, Any]]


def _literals(field: FieldInfo) -> frozenset[str]:
    if get_origin(field.annotation) is not Literal:
        raise TypeError(f"expected a Literal, got {field.annotation!r}")
    return frozenset(get_args(field.annotation))


def _length(field: FieldInfo) -> tuple[int, int]:
    if field.annotation is not str or len(field.metadata) != 2:
        raise TypeError(f"expected a str with a min and max length, got {field!r}")
    low = [m.min_length for m in field.metadata if isinstance(m, MinLen)]
    high = [m.max_length for m in field.metadata if isinstance(m, MaxLen)]
    return low[0], high[0]


def _pattern(field: FieldInfo) -> Callable[[str], re.Match[str] | None]:
    """The field's pattern as a Python full match (pydantic's ``$`` is the end of text)."""
    patterns = [getattr(m, "pattern", None) for m in field.metadata]
    if field.annotation is not str or len(patterns) != 1 or not isinstance(patterns[0], str):
        raise TypeError(f"expected a str with one pattern, got {field!r}")
    text = patterns[0]
    if not (text.startswith("^") and text.endswith("$")) or re.search(r"[$^]", text[1:-1]):
        raise TypeError(f"expected a pattern anchored at both ends only, got {text!r}")
    return re.compile(text[1:-1]).fullmatch


def _check_fields(model: type[BaseModel], expected: dict[str, Any]) -> None:
    """The model has exactly the fields (and defaults) this module was written for."""
    config = model.model_config
    if config.get("strict") is not True or config.get("extra") != "ignore":
        raise TypeError(f"{model.__name__}: expected strict=True, extra='ignore'")
    fields = {name: field.get_default(call_default_factory=True)
              if not field.is_required() else ... for name, field in model.model_fields.items()}
    if fields != expected:
        raise TypeError(f"{model.__name__} changed: {fields} != {expected}; update the fast path")


def _derive(envelope: type[GatewayEnvelope] = GatewayEnvelope) -> None:
    """Refuse (``TypeError``) a model other than the one :func:`fast_values` mirrors."""
    for part in (Channel, Actor):
        _check_fields(part, {"type": ..., "id": None})
        if part.model_fields["id"].annotation != (str | None):
            raise TypeError(f"{part.__name__}.id: expected str | None")
    _check_fields(envelope, {
        "event_id": ..., "type": ..., "workspace_id": ..., "contact_id": ...,
        "occurred_at": ..., "channel": None, "actor": None, "data": {}})
    fields = envelope.model_fields
    if (fields["channel"].annotation != (Channel | None)
            or fields["actor"].annotation != (Actor | None)
            or fields["occurred_at"].annotation is not datetime
            or fields["data"].annotation != dict[str, Any]):
        raise TypeError("GatewayEnvelope's field types changed; update the fast path")
    validators = {name: [getattr(m, "func", None) for m in field.metadata]
                  for name, field in fields.items() if name in ("occurred_at", "data")}
    if validators["occurred_at"] != [parse_rfc3339] or len(validators["data"]) != 1:
        raise TypeError("GatewayEnvelope's validators changed; update the fast path")


_derive()
_FIELDS = GatewayEnvelope.model_fields
EVENT_ID: Final = _length(_FIELDS["event_id"])
CONTACT_ID: Final = _length(_FIELDS["contact_id"])
WORKSPACE: Final = _pattern(_FIELDS["workspace_id"])
TYPES: Final = _literals(_FIELDS["type"])
CHANNEL_TYPES: Final = _literals(Channel.model_fields["type"])
ACTOR_TYPES: Final = _literals(Actor.model_fields["type"])
_EID_MIN, _EID_MAX = EVENT_ID
_CID_MIN, _CID_MAX = CONTACT_ID
#: each allowed literal to itself: looked up instead of tested for membership, so an
#: accepted value is the one shared object (the command holds no copy of its own, and
#: every dict keyed by it downstream compares by identity)
_TYPES: Final = {kind: kind for kind in TYPES}
_CHANNEL_TYPES: Final = {kind: kind for kind in CHANNEL_TYPES}
_ACTOR_TYPES: Final = {kind: kind for kind in ACTOR_TYPES}

#: workspace ids the pattern matched, each to itself (a few per deployment: the pattern
#: is matched once per id, not once per event); emptied when it reaches the limit
_WORKSPACES: dict[str, str] = {}
WORKSPACES_KEPT: Final = 4096


def _workspace(workspace: str) -> str | None:
    """``workspace`` (its first accepted copy) if the pattern matches it, else None."""
    known = _WORKSPACES.get(workspace)
    if known is not None:
        return known
    if WORKSPACE(workspace) is None:
        return None
    if len(_WORKSPACES) >= WORKSPACES_KEPT:
        _WORKSPACES.clear()
    _WORKSPACES[workspace] = workspace
    return workspace


_ABSENT: Final = (None, None)


def _typed(part: Any, types: dict[str, str]) -> tuple[str | None, str | None] | None:
    """``channel`` or ``actor``: (type, id) if surely valid (absent: both None), else None."""
    if part is None:
        return _ABSENT
    if type(part) is not dict:
        return None
    kind, ident = part.get("type"), part.get("id")
    if type(kind) is not str or (kind := types.get(kind)) is None or (
            ident is not None and type(ident) is not str):
        return None
    return kind, ident


def fast_values(obj: dict[str, Any]) -> Values | None:
    """The envelope's values if ``obj`` is certainly valid, else ``None`` (ask the model).

    ``obj`` is a JSON object as a JSON decoder gives it (string keys) whose text has
    no ``\\u0000`` escape: the NUL rule (``check_storable``) is left to the model.
    """
    get = obj.get
    event_id, kind, workspace, contact = (get("event_id"), get("type"), get("workspace_id"),
                                          get("contact_id"))
    if (type(event_id) is not str or not _EID_MIN <= len(event_id) <= _EID_MAX
            or type(kind) is not str or (kind := _TYPES.get(kind)) is None
            or type(workspace) is not str or (workspace := _workspace(workspace)) is None
            or type(contact) is not str or not _CID_MIN <= len(contact) <= _CID_MAX):
        return None
    channel, actor, data = get("channel"), get("actor"), get("data")
    channel_pair, actor_pair = _typed(channel, _CHANNEL_TYPES), _typed(actor, _ACTOR_TYPES)
    if channel_pair is None or actor_pair is None:
        return None
    (channel_type, channel_id), (actor_type, actor_id) = channel_pair, actor_pair
    if data is None:
        data = {}
    elif type(data) is not dict:
        return None
    try:
        moment = parse_rfc3339(get("occurred_at"))
        check_rules(kind, channel_type is not None, actor_type, data)
    except ValueError:
        return None
    return (event_id, kind, workspace, contact, moment, channel_type, channel_id, actor_type,
            actor_id, data)
