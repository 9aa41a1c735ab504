"""The gateway event envelope, version 1 (CONTRACT §1 and the per-type rules of §2).

A gateway hands us one JSON object per event. This module is the single place
that decides whether such an object is well formed; anything it refuses is an
``invalid`` outcome and goes to the dead-letter store with the reason it gives.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

ENVELOPE_SCHEMA_VERSION: Final = 1

ChannelType = Literal[
    "facebook", "instagram", "whatsapp", "webchat", "line", "telegram",
    "viber", "sms", "twitter", "wechat", "email", "custom",
]
ActorType = Literal["contact", "user", "automation", "dialogflow", "system"]
EventType = Literal[
    "message.received", "message.sent", "welcome", "conversation.open",
    "conversation.close", "conversation.assign", "dialogflow.response", "contact.merge",
]

EVENT_TYPES: Final[frozenset[str]] = frozenset(EventType.__args__)  # type: ignore[attr-defined]

#: Actor types each event type accepts; ``None`` in a set means "no actor" is fine,
#: a missing key means any actor or none.
ALLOWED_ACTORS: Final[dict[str, frozenset[str | None]]] = {
    "message.received": frozenset({None, "contact"}),
    "message.sent": frozenset({"user", "automation", "dialogflow"}),
    "conversation.open": frozenset({"user", "automation"}),
    "conversation.close": frozenset({"user", "automation", "dialogflow"}),
    "conversation.assign": frozenset({"user", "automation", "dialogflow"}),
}
CHANNEL_REQUIRED: Final[frozenset[str]] = frozenset({"message.received", "welcome"})

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
)


#: the form almost every gateway time has (ASCII digits written 0): no pattern needed
_PLAIN_UTC: Final = b"0000-00-00T00:00:00Z"
_DIGITS_TO_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")


def parse_rfc3339(value: object) -> datetime:
    """Parse an RFC 3339 timestamp that carries an offset; return it in UTC.

    A text of the form ``YYYY-MM-DDTHH:MM:SSZ`` in ASCII digits (one the pattern
    certainly matches, needing no change) goes straight to ``fromisoformat``: the
    same verdict and value as :func:`parse_rfc3339_by_pattern`, ~0.4 µs sooner.
    """
    if (type(value) is str and value.isascii()
            and value.encode().translate(_DIGITS_TO_ZERO) == _PLAIN_UTC):
        return _from_iso(value, value)
    return parse_rfc3339_by_pattern(value)


def parse_rfc3339_by_pattern(value: object) -> datetime:
    """:func:`parse_rfc3339` by the pattern alone (the reference)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp must carry a UTC offset")
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string")
    if not _RFC3339.match(value):
        if re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$", value):
            raise ValueError(f"timestamp {value!r} has no UTC offset (add Z or +HH:MM)")
        raise ValueError(f"{value!r} is not an RFC 3339 timestamp with offset")
    text = value.upper()
    if "." in text:  # Python keeps microseconds only
        head, _, rest = text.partition(".")
        digits = re.match(r"\d+", rest)
        assert digits is not None
        frac = digits.group(0)
        text = f"{head}.{frac[:6].ljust(6, '0')}{rest[len(frac):]}"
    return _from_iso(text, value)


def _from_iso(text: str, value: str) -> datetime:
    """``text`` (``value`` made fit for ``fromisoformat``) in UTC, or the reason."""
    try:
        moment = datetime.fromisoformat(text)
        # an offset of zero is already the UTC singleton: no conversion needed
        return moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date and time") from exc
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is after year 9999 in UTC
        raise ValueError(f"{value!r} is out of range once converted to UTC") from None


Rfc3339 = Annotated[datetime, BeforeValidator(parse_rfc3339)]
NonEmpty200 = Annotated[str, Field(min_length=1, max_length=200)]
WorkspaceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Channel(BaseModel):
    """Where the contact talks to us."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)
    type: ChannelType
    id: str | None = None


class Actor(BaseModel):
    """Who caused the event."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)
    type: ActorType
    id: str | None = None


def _data_or_empty(value: object) -> object:
    return {} if value is None else value


class GatewayEnvelope(BaseModel):
    """One event as a channel gateway publishes it (envelope v1)."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    event_id: NonEmpty200
    type: EventType
    workspace_id: WorkspaceId
    contact_id: NonEmpty200
    occurred_at: Rfc3339
    channel: Channel | None = None
    actor: Actor | None = None
    data: Annotated[dict[str, Any], BeforeValidator(_data_or_empty)] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _check_type_rules(self, info: ValidationInfo) -> GatewayEnvelope:
        check_type_rules(self)
        # callers that saw the raw JSON pass {"nul_free": True} when it has no \u0000
        if not (info.context and info.context.get("nul_free")):
            check_storable(self)
        return self


def _optional_str(data: dict[str, Any], key: str) -> None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"data.{key} must be a string or null")


def markdone_flag(parameters: dict[str, Any]) -> bool | None:
    """Read Dialogflow's ``RB_MARKDONE``: True closes, False opens, None = not set.

    Absent, ``null`` and ``""`` all mean "not set" (no lifecycle effect); any
    value other than true/false (JSON or string, any case) is invalid.
    """
    value = parameters.get("RB_MARKDONE")
    if value is None or value == "":  # Dialogflow sends "" for a parameter it did not set
        return None
    if value is True or (isinstance(value, str) and value.lower() == "true"):
        return True
    if value is False or (isinstance(value, str) and value.lower() == "false"):
        return False
    raise ValueError(
        f"data.parameters.RB_MARKDONE must be true or false, got {value!r}"
    )


#: ``data`` keys whose values end up stored (and so must be storable text).
STORED_DATA_KEYS: Final = ("message_id", "category", "summary", "assignee_id", "team_id",
                           "secondary_contact_id")


def check_storable(env: GatewayEnvelope) -> None:
    """Refuse NUL characters in values we store: PostgreSQL text cannot hold them."""
    values = [env.event_id, env.contact_id, env.channel.id if env.channel else None,
              env.actor.id if env.actor else None,
              *(env.data.get(k) for k in STORED_DATA_KEYS)]
    for value in values:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text fields must not contain NUL (\\u0000) characters")


def check_type_rules(env: GatewayEnvelope) -> None:
    """The per-type requirements of CONTRACT §2 that a schema alone cannot state."""
    check_rules(env.type, env.channel is not None, env.actor.type if env.actor else None,
                env.data)


def check_rules(kind: str, has_channel: bool, actor_type: str | None,
                data: dict[str, Any]) -> None:
    """:func:`check_type_rules` on the envelope's values (also the fast path's rules)."""
    if kind in CHANNEL_REQUIRED and not has_channel:
        raise ValueError(f"channel is required for {kind}")
    allowed = ALLOWED_ACTORS.get(kind)
    if allowed is not None and actor_type not in allowed:
        if actor_type is None:
            raise ValueError(f"actor is required for {kind}")
        names = " or ".join(sorted(a for a in allowed if a))
        raise ValueError(f"actor type {actor_type!r} is not allowed for {kind} ({names})")
    rule = _DATA_RULES.get(kind)
    if rule is not None:
        rule(data)


def _received(data: dict[str, Any]) -> None:
    _optional_str(data, "message_id")
    _optional_str(data, "text")


def _sent(data: dict[str, Any]) -> None:
    _optional_str(data, "text")


def _close(data: dict[str, Any]) -> None:
    _optional_str(data, "category")
    _optional_str(data, "summary")


def _assign(data: dict[str, Any]) -> None:
    if "assignee_id" not in data:
        raise ValueError("data.assignee_id is required (a string, or null to unassign)")
    _optional_str(data, "assignee_id")
    _optional_str(data, "team_id")


def _dialogflow(data: dict[str, Any]) -> None:
    params = data.get("parameters")
    if params is not None:
        if not isinstance(params, dict):
            raise ValueError("data.parameters must be an object")
        markdone_flag(params)


def _merge(data: dict[str, Any]) -> None:
    secondary = data.get("secondary_contact_id")
    if not isinstance(secondary, str) or not 1 <= len(secondary) <= 200:
        raise ValueError("data.secondary_contact_id is required (a string of 1..200 chars)")


#: the rules on ``data`` per event type (types without an entry take any object)
_DATA_RULES: Final[dict[str, Callable[[dict[str, Any]], None]]] = {
    "message.received": _received, "message.sent": _sent, "conversation.close": _close,
    "conversation.assign": _assign, "dialogflow.response": _dialogflow, "contact.merge": _merge,
}
