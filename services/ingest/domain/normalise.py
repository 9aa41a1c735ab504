"""Ingest: raw gateway input -> validated envelope -> one command, or an invalid reason.

Nothing here raises on bad input: a caller always gets either a command or an
:class:`Invalid` carrying the raw text and a reason a human can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, final

import orjson
from pydantic import ValidationError

from schemas.commands import (
    AcknowledgeBotResponse,
    AssignConversation,
    CloseConversation,
    CommandBase,
    MergeContacts,
    OpenConversation,
    OpenWithWelcome,
    ReceiveMessage,
    SendMessage,
)
from schemas.construct import maker
from schemas.envelope import GatewayEnvelope, markdone_flag
from services.ingest.domain.fast_envelope import Values, fast_values

_VALIDATE = GatewayEnvelope.model_validate

#: The largest input accepted anywhere: one JSONL line of ``bonychat import``,
#: one Kafka gateway record, one HTTP request body (over it: 413). 1 MiB.
MAX_INPUT_BYTES: Final = 1024 * 1024


@final  # no subclasses: the hot path tests for it as ``type(item) is Invalid``
@dataclass(frozen=True, slots=True)
class Invalid:
    """Input that is not a valid envelope; it goes to the dead-letter store."""

    raw: str
    reason: str
    workspace_id: str | None = None
    event_id: str | None = None


def describe(error: ValidationError) -> str:
    """One readable line out of pydantic's error list (first problem first)."""
    parts = []
    for item in error.errors()[:3]:
        loc = ".".join(str(p) for p in item["loc"])
        msg = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "missing":
            msg = "field required"
        elif item["type"] == "literal_error":
            allowed = msg.removeprefix("Input should be ")
            msg = f"{item['input']!r} is not one of the allowed values ({allowed})"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse(raw: str | bytes) -> CommandBase | Invalid:
    """Validate one raw JSON envelope and normalise it into a command.

    An envelope over :data:`MAX_INPUT_BYTES` is invalid whatever it holds.
    """
    return _parse(raw, parse_object)


def parse_by_model(raw: str | bytes) -> CommandBase | Invalid:
    """:func:`parse` without the fast check: the model alone (the reference)."""
    return _parse(raw, parse_model)


def _parse(raw: str | bytes,
           then: Callable[[Any, str | bytes], CommandBase | Invalid]) -> CommandBase | Invalid:
    if len(raw) * (4 if isinstance(raw, str) else 1) > MAX_INPUT_BYTES:
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "replace"))
        if size > MAX_INPUT_BYTES:
            return _too_large(raw, size)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Invalid(_text(raw), f"malformed JSON: {exc}")
    return then(obj, raw)


def too_large(size: int) -> str:
    """The reason given for an envelope of ``size`` bytes over the limit."""
    return (f"envelope of {size:,} bytes exceeds the limit of {MAX_INPUT_BYTES:,} bytes "
            "(1 MiB)")


def _too_large(raw: str | bytes, size: int) -> Invalid:
    """Invalid for its size; keeps the workspace and event ids when it is a JSON object."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = None
    ids = [obj.get(key) if isinstance(obj, dict) else None
           for key in ("workspace_id", "event_id")]
    return Invalid(_text(raw), too_large(size),
                   *(value if isinstance(value, str) else None for value in ids))


def _text(raw: str | bytes) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")


_NUL_FREE = {"nul_free": True}


def parse_object(obj: Any, raw: str | bytes) -> CommandBase | Invalid:
    """Like :func:`parse` for an already decoded JSON value and its raw JSON text.

    The fast check (:mod:`.fast_envelope`) accepts what it is sure of; everything
    else (every invalid envelope among it) goes through the model, which gives the
    verdict and the reason.
    """
    if type(obj) is dict:
        # JSON can only carry NUL as the escape \u0000: without it, no NUL to refuse
        nul_free = (b"\\u0000" not in raw) if isinstance(raw, bytes) else ("\\u0000" not in raw)
        if nul_free:
            values = fast_values(obj)
            if values is not None:
                return command_of(values)
    return parse_model(obj, raw)


def parse_model(obj: Any, raw: str | bytes) -> CommandBase | Invalid:
    """:func:`parse_object` by the model alone (the reference the fast check agrees with)."""
    if not isinstance(obj, dict):
        return Invalid(_text(raw), f"envelope must be a JSON object, got {type(obj).__name__}")
    nul_free = (b"\\u0000" not in raw) if isinstance(raw, bytes) else ("\\u0000" not in raw)
    try:
        envelope = _VALIDATE(obj, context=_NUL_FREE if nul_free else None)
    except ValidationError as exc:
        ws, eid = obj.get("workspace_id"), obj.get("event_id")
        return Invalid(_text(raw), describe(exc), ws if isinstance(ws, str) else None,
                       eid if isinstance(eid, str) else None)
    return to_command(envelope)


def to_command(env: GatewayEnvelope) -> CommandBase:
    """Map a valid envelope onto the command it asks for (CONTRACT §2 table)."""
    return command_of((env.event_id, env.type, env.workspace_id, env.contact_id,
                       env.occurred_at, env.channel.type if env.channel else None,
                       env.channel.id if env.channel else None,
                       env.actor.type if env.actor else None,
                       env.actor.id if env.actor else None, env.data))


_COMMON: Final = ("workspace_id", "contact_id", "event_id", "event_type", "occurred_at",
                  "actor_type", "actor_id")
# one maker per kind of command built below, each of the names it is given, in that order
_RECEIVE: Final = maker(ReceiveMessage, (*_COMMON, "channel_type", "channel_id", "message_id"))
_SEND: Final = maker(SendMessage, _COMMON)
_WELCOME: Final = maker(OpenWithWelcome, (*_COMMON, "channel_type", "channel_id"))
_OPEN: Final = maker(OpenConversation, (*_COMMON, "opened_by", "channel_type", "channel_id"))
_CLOSE: Final = maker(CloseConversation, (*_COMMON, "closed_by", "category", "summary"))
_BOT_CLOSE: Final = maker(CloseConversation, (*_COMMON, "closed_by"))
_ASSIGN: Final = maker(AssignConversation, (*_COMMON, "assignee_id", "team_given", "team_id"))
_ACKNOWLEDGE: Final = maker(AcknowledgeBotResponse, _COMMON)
_MERGE: Final = maker(MergeContacts, (*_COMMON, "secondary_contact_id"))


def command_of(values: Values) -> CommandBase:
    """The command a valid envelope's values (:data:`.fast_envelope.Values`) ask for
    (CONTRACT §2 table).

    The values are already validated, so commands are constructed without a
    second validation pass (this is the ingest hot path): each by its
    ``construct.maker``, straight from the values, as ``construct_from`` would
    build it from a dict of them (tests/unit/test_construct.py).
    """
    (event_id, kind, workspace_id, contact_id, occurred_at, channel_type, channel_id,
     actor_type, actor_id, data) = values
    if kind == "message.received":
        assert channel_type is not None
        return _RECEIVE(workspace_id, contact_id, event_id, kind, occurred_at, actor_type,
                        actor_id, channel_type, channel_id, data.get("message_id"))
    if kind == "message.sent":
        return _SEND(workspace_id, contact_id, event_id, kind, occurred_at, actor_type,
                     actor_id)
    if kind == "welcome":
        assert channel_type is not None
        return _WELCOME(workspace_id, contact_id, event_id, kind, occurred_at, actor_type,
                        actor_id, channel_type, channel_id)
    if kind == "conversation.open":
        return _OPEN(workspace_id, contact_id, event_id, kind, occurred_at, actor_type,
                     actor_id, actor_type, channel_type, channel_id)
    if kind == "conversation.close":
        return _CLOSE(workspace_id, contact_id, event_id, kind, occurred_at, actor_type,
                      actor_id, actor_type, data.get("category"), data.get("summary"))
    if kind == "conversation.assign":
        return _ASSIGN(workspace_id, contact_id, event_id, kind, occurred_at, actor_type,
                       actor_id, data["assignee_id"], "team_id" in data, data.get("team_id"))
    if kind == "dialogflow.response":
        flag = markdone_flag(data.get("parameters") or {})
        if flag is True:
            return _BOT_CLOSE(workspace_id, contact_id, event_id, kind, occurred_at,
                              actor_type, actor_id, "dialogflow")
        if flag is False:
            return _OPEN(workspace_id, contact_id, event_id, kind, occurred_at, actor_type,
                         actor_id, "dialogflow", channel_type, channel_id)
        return _ACKNOWLEDGE(workspace_id, contact_id, event_id, kind, occurred_at, actor_type,
                            actor_id)
    assert kind == "contact.merge"
    return _MERGE(workspace_id, contact_id, event_id, kind, occurred_at, actor_type, actor_id,
                  data["secondary_contact_id"])
