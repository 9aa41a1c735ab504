"""Fast construction of frozen models from data that is already validated.

pydantic's ``model_construct`` walks every field in Python and is slower than
validating. On the hot path (commands built from a validated envelope, events
recorded by the aggregate) we know every value is right, so we fill defaults
from a per-class table and set the instance dict directly. The result is an
ordinary frozen model: it serialises, compares and refuses mutation as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

M = TypeVar("M", bound=BaseModel)
_DEFAULTS: dict[type[BaseModel], tuple[dict[str, Any], frozenset[str]]] = {}
_setattr = object.__setattr__


def _table(cls: type[BaseModel]) -> tuple[dict[str, Any], frozenset[str]]:
    defaults: dict[str, Any] = {}
    required: set[str] = set()
    for name, field in cls.model_fields.items():
        if field.default_factory is not None:
            raise TypeError(f"{cls.__name__}.{name}: default factories are not supported")
        if field.default is PydanticUndefined:
            required.add(name)
        else:
            defaults[name] = field.default
    entry = (defaults, frozenset(required))
    _DEFAULTS[cls] = entry
    return entry


def construct(cls: type[M], **values: Any) -> M:
    """Build ``cls`` from trusted values; missing required fields still raise."""
    defaults, required = _DEFAULTS.get(cls) or _table(cls)
    missing = required.difference(values)
    if missing:
        raise TypeError(f"{cls.__name__} is missing {sorted(missing)}")
    return _instance(cls, {**defaults, **values}, set(values))


def _instance(cls: type[M], values: dict[str, Any], fields_set: set[str]) -> M:
    """A model of ``cls`` holding ``values``, with no validation at all."""
    instance = cls.__new__(cls)
    _setattr(instance, "__dict__", values)
    _setattr(instance, "__pydantic_fields_set__", fields_set)
    _setattr(instance, "__pydantic_extra__", None)
    _setattr(instance, "__pydantic_private__", None)
    return instance


_FIELD_SETS: dict[type[BaseModel], set[str]] = {}


def from_values(cls: type[M], fields: tuple[str, ...], values: Sequence[Any]) -> M:
    """Like :func:`construct` for the value of every field, in ``fields`` order.

    The caller guarantees completeness (e.g. the values were packed from a model
    of the same class), so no defaults are merged and nothing is checked.
    """
    names = _FIELD_SETS.get(cls)
    if names is None:
        names = _FIELD_SETS[cls] = set(cls.model_fields)
    return _instance(cls, dict(zip(fields, values, strict=True)), names.copy())
