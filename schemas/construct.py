"""Fast construction of frozen models from data that is already validated.

pydantic's ``model_construct`` walks every field in Python and is slower than
validating. On the hot path (commands built from a validated envelope, events
recorded by the aggregate) we know every value is right, so we fill defaults
from a per-class table and set the instance dict directly. The result is an
ordinary frozen model: it serialises, compares and refuses mutation as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import GetSetDescriptorType, MemberDescriptorType
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

M = TypeVar("M", bound=BaseModel)
_DEFAULTS: dict[type[BaseModel], tuple[dict[str, Any], frozenset[str]]] = {}
_new = object.__new__


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
    return construct_from(cls, values)


def construct_from(cls: type[M], values: dict[str, Any]) -> M:
    """:func:`construct` from a dict of the values (not kept)."""
    defaults, required = _DEFAULTS.get(cls) or _table(cls)
    if not values.keys() >= required:
        missing = required.difference(values)
        raise TypeError(f"{cls.__name__} is missing {sorted(missing)}")
    return _instance(cls, {**defaults, **values}, set(values))


def defaults_of(cls: type[BaseModel]) -> dict[str, Any]:
    """The default value of every field of ``cls`` that has one, in field order.

    A caller of :func:`trusted` starts its values from a copy of it, so that the
    key order (the order of the JSON pydantic writes) is :func:`construct`'s.
    """
    return (_DEFAULTS.get(cls) or _table(cls))[0]


_ALL_FIELDS: dict[type[BaseModel], set[str]] = {}


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """A model of ``cls`` that holds ``values`` itself: no check and no copy (hot path).

    ``values`` must hold every field of ``cls`` and nothing else, in the key
    order its JSON is to have (pydantic serialises a model's dict in its order);
    the caller gives it up. Every such model shares one set of field names as
    its ``model_fields_set`` (as for a model decoded from JSON with every field):
    a frozen model never changes it, and ``model_copy`` copies it.
    """
    names = _ALL_FIELDS.get(cls)
    if names is None:
        names = _ALL_FIELDS[cls] = set(cls.model_fields)
    return _instance(cls, values, names)


#: the setters of ``BaseModel``'s three slots: calling a slot's own descriptor skips
#: ``object.__setattr__``'s lookup of the name through the class (~0.1 µs a model)
_SLOTS: tuple[str, ...] = ("__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
if set(BaseModel.__slots__) != {"__dict__", *_SLOTS} or not all(
        isinstance(BaseModel.__dict__[name], MemberDescriptorType) for name in _SLOTS):
    raise TypeError("pydantic's BaseModel slots changed: update schemas.construct")
#: and of its instance dict (``BaseModel`` holds ``__dict__`` as a slot, so its one
#: descriptor serves every model class: none of them declares slots of its own)
if not isinstance(BaseModel.__dict__["__dict__"], GetSetDescriptorType):
    raise TypeError("pydantic's BaseModel.__dict__ changed: update schemas.construct")
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _instance(cls: type[M], values: dict[str, Any], fields_set: set[str]) -> M:
    """A model of ``cls`` holding ``values``, with no validation at all."""
    instance = _new(cls)
    _set_dict(instance, values)
    _set_fields_set(instance, fields_set)
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


def maker(cls: type[M], names: tuple[str, ...], *, every_field: bool = False
          ) -> Callable[..., M]:
    """A function of the values of ``names`` (positional, in that order) that builds
    exactly what ``construct_from(cls, dict(zip(names, values)))`` builds: the same
    keys in the same order (defaults first, then the other names), the same
    ``model_fields_set`` (``names``; one set shared by every model it builds: a
    frozen model never changes it, as :func:`trusted`). With ``every_field``, what
    ``trusted(cls, {**defaults_of(cls), **dict(zip(names, values))})`` builds (every
    field counts as set).

    Generated once per call site, it builds the dict in one display, with no
    merge of the defaults and no new set per model: about 1 µs a command less
    (the hot path of ingest and of the gateway input, ``normalise.command_of``).
    """
    defaults, required = _DEFAULTS.get(cls) or _table(cls)
    unknown = set(names).difference(cls.model_fields)
    if unknown or len(set(names)) != len(names) or not required <= set(names):
        raise TypeError(f"{cls.__name__}: cannot make it from {names}")
    if not all(name.isidentifier() and not name.startswith("_") for name in names):
        raise TypeError(f"{cls.__name__}: not plain field names: {names}")
    namespace: dict[str, Any] = {"_cls": cls, "_new": _new, "_set_dict": _set_dict,
                                 "_fields_set": set(cls.model_fields) if every_field
                                 else set(names), "_set_fields_set": _set_fields_set,
                                 "_set_extra": _set_extra, "_set_private": _set_private}
    items = []
    for index, (name, default) in enumerate(defaults.items()):
        if name in names:
            items.append(f"{name!r}: {name}")
        else:
            namespace[f"_default{index}"] = default
            items.append(f"{name!r}: _default{index}")
    items.extend(f"{name!r}: {name}" for name in names if name not in defaults)
    exec(f"def make({', '.join(names)}):\n"  # field names, checked above
         "    instance = _new(_cls)\n"
         f"    _set_dict(instance, {{{', '.join(items)}}})\n"
         "    _set_fields_set(instance, _fields_set)\n"
         "    _set_extra(instance, None)\n"
         "    _set_private(instance, None)\n"
         "    return instance\n", namespace)
    function: Callable[..., M] = namespace["make"]
    return function


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
