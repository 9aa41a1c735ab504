"""PostgreSQL helpers every service's PostgreSQL adapter shares.

Where to connect (:class:`PostgresTarget`), statements with the schema filled in as
identifiers, NUL-safe text and the retry of reads on a dropped connection. They sit
here, below the adapters of every service, so that no service's adapter imports
another service's adapter or the composition root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import orjson
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import retry
from psycopg.sql import SQL, Composed, Identifier

P = ParamSpec("P")
R = TypeVar("R")
DEFAULT_SCHEMA = "public"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """Where to connect (libpq keywords) and which schema to use."""

    params: dict[str, Any]
    schema: str = DEFAULT_SCHEMA

    def describe(self) -> str:
        """``user@host:port/dbname``, never the password."""
        p = self.params
        return (f"{p.get('user', '')}@{p.get('host', 'localhost')}:{p.get('port', 5432)}"
                f"/{p.get('dbname', '')}")


def transient_retry(func: Callable[P, R]) -> Callable[P, R]:
    """Retry a read a few times on a dropped connection (eventsourcing's policy, shorter)."""
    wrapped: Callable[P, R] = retry((InterfaceError, OperationalError), max_attempts=3,
                                    wait=0.2)(func)
    return wrapped


def pg_text(value: str | None) -> str | None:
    """PostgreSQL ``text`` cannot hold NUL: replace it rather than lose the whole batch."""
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


#: how JSON writes a NUL (PostgreSQL's text and jsonb refuse it); a text holding these
#: six characters themselves also matches, and goes the caller's other way
NUL_ESCAPE = b"\\u0000"


def pg_json(value: Any) -> str | None:
    """``value`` as one JSON text for a ``jsonb`` parameter (orjson writes it in one C
    call, where psycopg's array dumpers walk every value in Python); None when JSON
    cannot carry it as it is (a lone surrogate, an integer over 64 bits) or PostgreSQL
    cannot take it (a NUL in a text): the caller then sends arrays, as it always did."""
    try:
        data = orjson.dumps(value)
    except TypeError:
        return None
    return None if NUL_ESCAPE in data else data.decode()


def connection_params(datastore: PostgresDatastore) -> dict[str, Any]:
    """libpq keywords of the datastore's pool, for a connection of one's own."""
    kwargs = datastore.pool.kwargs
    if callable(kwargs):
        kwargs = kwargs()
    return {k: v for k, v in (kwargs or {}).items() if k != "row_factory"}


def sql(template: str, schema: str, **names: str) -> Composed:
    """A statement with ``{schema}`` (and other ``{names}``) filled in as identifiers."""
    return SQL(template).format(schema=Identifier(schema),
                                **{key: Identifier(value) for key, value in names.items()})
