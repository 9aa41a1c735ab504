"""Decoding a command record fast, derived from the command models (schemas.commands).

``CommandMessage.model_validate_json`` is the contract's decoder; it costs about
4 µs per record, on the conversation service's hot path. :func:`decode_command`
decodes it with msgspec structs built from the models' fields when this module
is imported (every field required, of the field's type; times only in the UTC
form ingest writes); it accepts only what it is sure the model accepts and
returns ``None`` for anything else (a missing or unknown field, another type or
time form, bad JSON), so that the caller asks the model, which gives the verdict
and the reason as before. A model field of a kind it does not know refuses the
import: the models stay the one definition. tests/unit/test_command_codec.py
proves both decoders agree on the commands of every envelope the fuzz suite
generates, and on damaged ones.

Times come out in ``datetime.UTC`` (``datetime.fromisoformat`` of the ``Z``
form), as ingest's ``parse`` gives them and so as the embedded runtime has
them, where the model gives pydantic's own ``TzInfo(0)``: the same instant and
offset. Events decided from such commands are written by
``schemas.events.encode_event``'s orjson branch (the same bytes, ~1 µs per
event less than pydantic's serialiser), and the decoder needs no ``replace``
of the zone: 2.9 µs a record instead of 4.1 (``bench/decide.py --records``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, Union, get_args, get_origin

import msgspec

from schemas.commands import COMMAND_CLASSES, CommandBase, CommandMessage
from schemas.construct import trusted

#: the UTC times ingest writes (orjson, ``OPT_UTC_Z``): seconds, or microseconds
UTC_TIME: Final = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z$"
#: those forms with every (ASCII) digit written 0: what :func:`utc_time` accepts
_UTC_FORMS: Final = frozenset({b"0000-00-00T00:00:00Z", b"0000-00-00T00:00:00.000000Z"})
_DIGITS_TO_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")


def utc_time(text: str) -> datetime | None:
    """``text`` as a time if it has the form :data:`UTC_TIME` (ASCII digits) and is a
    valid time (``datetime.fromisoformat``: in ``datetime.UTC``), else ``None``.

    The same verdict as the pattern and ``fromisoformat`` together (a form the
    pattern also lets through, other decimal digits or a final newline, is one
    ``fromisoformat`` refuses), at ~0.2 µs where msgspec's ``pattern`` constraint
    (Python's ``re`` called for the field) cost ~1.5 µs a record.
    """
    try:
        form = text.encode("ascii").translate(_DIGITS_TO_ZERO)
    except UnicodeEncodeError:
        return None
    if form not in _UTC_FORMS:
        return None
    try:
        return _fromisoformat(text)
    except ValueError:
        return None


def _type_of(annotation: Any) -> Any:
    """The msgspec type of a command field's annotation (a time: its text, checked by
    :func:`utc_time` once decoded)."""
    if annotation in (str, str | None, bool) or get_origin(annotation) is Literal:
        return annotation
    if annotation is datetime:
        return str
    raise TypeError(f"the fast command decoder does not know {annotation!r}; teach it")


@dataclass(frozen=True, slots=True)
class _Spec:
    """One command class and what turns its decoded struct into the model's values."""

    cls: type[CommandBase]
    #: struct -> the model's ``__dict__`` (every field, in the model's order; a time
    #: ``None`` where its text is not one :func:`utc_time` accepts)
    values: Callable[[msgspec.Struct], dict[str, Any]]
    times: tuple[str, ...]


def _values_of(cls: type[CommandBase], tag: str) -> Callable[[msgspec.Struct], dict[str, Any]]:
    """A function building the model's ``__dict__`` from a struct in one dict display.

    Generated from ``cls.model_fields`` (each name an identifier, checked): the
    keys in the model's order (the order pydantic and ``encode_command`` write),
    ``command`` the class's tag, each time through :func:`utc_time`. About 0.6 µs a
    record less than a template copy updated with ``msgspec.structs.asdict``.
    """
    items = []
    for field, info in cls.model_fields.items():
        if not field.isidentifier() or field.startswith("_"):
            raise TypeError(f"{cls.__name__}.{field}: not a plain field name")
        if field == "command":
            items.append(f"{field!r}: {tag!r}")
        elif info.annotation is datetime:
            items.append(f"{field!r}: utc_time(body.{field})")
        else:
            items.append(f"{field!r}: body.{field}")
    namespace: dict[str, Any] = {"utc_time": utc_time}
    exec(f"def values(body):\n    return {{{', '.join(items)}}}\n", namespace)
    function: Callable[[msgspec.Struct], dict[str, Any]] = namespace["values"]
    return function


def _struct(cls: type[CommandBase]) -> tuple[type[msgspec.Struct], _Spec]:
    """A msgspec struct with every field of ``cls`` required, tagged by ``command``
    (not tracked by the collector: it holds text, ``None`` and booleans only)."""
    config = cls.model_config
    if config.get("extra") != "forbid" or config.get("strict"):
        raise TypeError(f"{cls.__name__}: expected extra='forbid' and lax validation")
    name = cls.model_fields["command"].default
    tag = cls.model_fields["command"].annotation
    if get_origin(tag) is not Literal or get_args(tag) != (name,):
        raise TypeError(f"{cls.__name__}: its command field must be its own name")
    fields = []
    for field, info in cls.model_fields.items():
        if info.metadata or info.default_factory is not None:
            raise TypeError(f"{cls.__name__}.{field}: the fast decoder cannot mirror it")
        if field != "command":
            fields.append((field, _type_of(info.annotation)))
    struct = msgspec.defstruct(name, fields, tag_field="command", tag=name,
                               forbid_unknown_fields=True, frozen=True, gc=False)
    times = tuple(f for f, info in cls.model_fields.items() if info.annotation is datetime)
    return struct, _Spec(cls, _values_of(cls, name), times)


def _decoder() -> tuple[msgspec.json.Decoder[Any], dict[type[msgspec.Struct], _Spec]]:
    if list(CommandMessage.model_fields) != ["body"] or CommandMessage.model_config.get(
            "extra") not in (None, "ignore"):
        raise TypeError("CommandMessage changed; update the fast command decoder")
    specs = dict(_struct(cls) for cls in COMMAND_CLASSES)
    body = Union[tuple(specs)]  # type: ignore[valid-type]  # noqa: UP007
    message = msgspec.defstruct("CommandMessage", [("body", body)], forbid_unknown_fields=True,
                                gc=False)
    return msgspec.json.Decoder(message), specs


_DECODER, _SPECS = _decoder()
_fromisoformat = datetime.fromisoformat


def decode_command(raw: bytes | str) -> CommandBase | None:
    """The command in a command record, or ``None``: ask ``CommandMessage`` (the model)."""
    try:
        body = _DECODER.decode(raw).body
    except (msgspec.MsgspecError, ValueError):
        return None
    spec = _SPECS[type(body)]
    values = spec.values(body)  # the model's field order; times in datetime.UTC
    for name in spec.times:
        if values[name] is None:  # not a UTC time in ingest's form: ask the model
            return None
    return trusted(spec.cls, values)  # every field was in the record: all are set


def read_command(raw: bytes | str) -> CommandBase:
    """The command in a command record: :func:`decode_command`, else the model's verdict
    (``CommandMessage.model_validate_json``, raising its ``ValidationError``)."""
    command = decode_command(raw)
    if command is None:
        command = CommandMessage.model_validate_json(raw).body
    return command
