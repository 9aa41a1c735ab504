"""Fixtures for integration tests against a real PostgreSQL.

Where PostgreSQL is: ``BONYCHAT_TEST_DATABASE_URL``, else ``BONYCHAT_DATABASE_URL``
from ``infra/local.env`` (written by ``make infra-up``). The session gets a fresh
database (dropped at the end) when the role may create one, and every test a
fresh schema in it, so tests never see each other's rows. Tests are skipped only
when no PostgreSQL is configured at all; a configured but unreachable server is
an error, not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

if TYPE_CHECKING:
    from kafka_fixtures import World

ROOT = Path(__file__).resolve().parents[2]
LOCAL_ENV = ROOT / "infra" / "local.env"


def configured_postgres_url() -> str | None:
    """The PostgreSQL URL tests should use, or None when none is configured."""
    url = os.environ.get("BONYCHAT_TEST_DATABASE_URL", "").strip()
    if url:
        return url
    if LOCAL_ENV.is_file():
        for line in LOCAL_ENV.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key.strip() == "BONYCHAT_DATABASE_URL" and value.strip():
                return value.strip().strip("'\"")
    return None


def with_query(url: str, **params: str) -> str:
    """``url`` with query parameters set (replacing any of the same name)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*query, *params.items()])))


def with_database(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))


def libpq_url(url: str) -> str:
    """Drop our own ``schema`` parameter, which libpq does not know."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The configured server (checked reachable), or skip when none is configured."""
    url = configured_postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL configured: set BONYCHAT_TEST_DATABASE_URL "
                    "or run `make infra-up` (writes infra/local.env)")
    try:
        psycopg.connect(libpq_url(url), connect_timeout=5).close()
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL configured at {urlsplit(url).hostname}:{urlsplit(url).port} "
                    f"but unreachable: {' '.join(str(exc).split())}")
    return url


@pytest.fixture(scope="session")
def postgres_database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database for this test session (or the configured one if we may not create)."""
    name = f"bonychat_test_{uuid.uuid4().hex[:10]}"
    admin = libpq_url(postgres_server_url)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.InsufficientPrivilege:
        yield postgres_server_url  # isolation then comes from the per-test schemas alone
        return
    try:
        yield with_database(postgres_server_url, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))


@contextmanager
def fresh_schema_url(database_url: str, prefix: str = "t") -> Iterator[str]:
    """``database_url`` whose ``schema`` parameter names a fresh, empty schema, dropped on
    exit."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield with_query(database_url, schema=schema)
    finally:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
                         .format(sql.Identifier(schema)))


@pytest.fixture
def postgres_url(postgres_database_url: str) -> Iterator[str]:
    """A URL whose ``schema`` parameter names a fresh, empty schema (dropped afterwards)."""
    with fresh_schema_url(postgres_database_url) as url:
        yield url


@pytest.fixture(scope="session")
def infra() -> dict[str, str]:
    """Kafka + PostgreSQL of ``infra/local.env`` (``make infra-up``), checked to answer."""
    from kafka_fixtures import reachable_infra

    return reachable_infra()


@pytest.fixture
def world(infra: dict[str, str]) -> Iterator[World]:
    """Fresh topics, schema and group prefix on ``infra``, destroyed afterwards
    (a module that needs another shape of world defines its own ``world``)."""
    from kafka_fixtures import new_world

    w = new_world(infra)
    try:
        yield w
    finally:
        w.destroy()
