"""Issue 9 §3 on PostgreSQL: the operator commands' end-to-end scenarios, installed command
and all, against a fresh PostgreSQL schema instead of an SQLite file.

The scenarios are those of ``tests/e2e/test_operators_cli.py``, collected here
with an ``ops`` fixture whose database is PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from services.composition import open_stores
from services.composition.dead_letters import open_operations_store
from services.composition.postgres import parse_url
from services.dead_letters.application.ports import OperationsStore, RetryRecord
from services.settings import Settings
from tests.e2e.test_operators_cli import (
    OpsCli,
    by_event,
    dead_letters,
    imported,
    test_dead_letters_csv_and_table,
    test_dead_letters_filters,
    test_dead_letters_lists_every_invalid_input_with_reason_time_and_source,
    test_outcome_follows_merges_both_ways,
    test_outcome_needs_workspace_and_event_id,
    test_outcome_of_an_accepted_event_lists_the_domain_events_it_caused,
    test_outcome_of_an_unknown_event_is_one_line_exit_1,
    test_outcome_of_rejected_and_invalid_events_names_the_reason,
    test_retry_dry_run_changes_nothing,
    test_retry_resubmits_through_the_pipeline_and_records_the_new_outcome,
    test_retry_usage_errors,
)

pytestmark = pytest.mark.integration

__all__ = [
    "test_dead_letters_csv_and_table",
    "test_dead_letters_filters",
    "test_dead_letters_lists_every_invalid_input_with_reason_time_and_source",
    "test_outcome_follows_merges_both_ways",
    "test_outcome_needs_workspace_and_event_id",
    "test_outcome_of_an_accepted_event_lists_the_domain_events_it_caused",
    "test_outcome_of_an_unknown_event_is_one_line_exit_1",
    "test_outcome_of_rejected_and_invalid_events_names_the_reason",
    "test_retry_dry_run_changes_nothing",
    "test_retry_resubmits_through_the_pipeline_and_records_the_new_outcome",
    "test_retry_usage_errors",
]


class PostgresOpsCli(OpsCli):
    """The installed command with ``BONYCHAT_DATABASE_URL`` naming a PostgreSQL schema."""

    def __init__(self, folder: Path, url: str) -> None:
        super().__init__(folder)
        self.url = url
        self.env["BONYCHAT_DATABASE_URL"] = url

    def fix_raw(self, entry_id: str, raw: str) -> None:
        target = parse_url(self.url)
        with psycopg.connect(**target.params, autocommit=True) as conn:
            conn.execute(sql.SQL("UPDATE {}.dead_letters SET raw = %s WHERE id = %s").format(
                sql.Identifier(target.schema)), (raw, int(entry_id)))


@pytest.fixture
def ops(tmp_path: Path, postgres_url: str) -> PostgresOpsCli:
    cli = PostgresOpsCli(tmp_path, postgres_url)
    imported(cli)
    return cli


def test_read_only_commands_create_no_tables(tmp_path: Path, postgres_url: str) -> None:
    cli = PostgresOpsCli(tmp_path, postgres_url)
    for args in (("outcome", "--workspace", "ws1", "e1"), ("dead-letters",),
                 ("dead-letters", "retry", "--all")):
        done = cli.run(*args)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert "no BonyChat tables" in done.stderr and len(done.stderr.splitlines()) == 1
    target = parse_url(postgres_url)
    with psycopg.connect(**target.params) as conn:
        row = conn.execute("SELECT count(*) FROM information_schema.tables "
                           "WHERE table_schema = %s", (target.schema,)).fetchone()
    assert row == (0,)


def test_retry_counts_attempts_on_postgres(ops: PostgresOpsCli) -> None:
    ops.json("dead-letters", "retry", "--all", "--format", "json")
    ops.json("dead-letters", "retry", "--all", "--format", "json")
    rows = by_event(dead_letters(ops))
    assert {row["retry_attempts"] for row in rows.values()} == {2}
    assert {row["retry_outcome"] for row in rows.values()} == {"invalid"}


@pytest.fixture(params=["sqlite", "postgresql"])
def operations_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OperationsStore]:
    if request.param == "sqlite":
        url = str(tmp_path / "ops.db")
    else:
        url = request.getfixturevalue("postgres_url")
    open_stores(Settings(database_url=url)).close()  # an imported store: tables exist
    store = open_operations_store(Settings(database_url=url))
    yield store
    store.close()


def test_a_resolved_retry_is_never_replaced(operations_store: OperationsStore) -> None:
    at = datetime(2026, 11, 24, tzinfo=UTC)
    operations_store.record_retries({"7": RetryRecord("invalid", "bad", at),
                                     "dlq-0-1": RetryRecord("accepted", None, at)})
    operations_store.record_retries({"7": RetryRecord("accepted", None, at),
                                     "dlq-0-1": RetryRecord("duplicate", None, at)})
    operations_store.record_retries({"7": RetryRecord("duplicate", None, at)})
    found = operations_store.retries(["7", "dlq-0-1", "8"])
    assert {k: (r.outcome, r.attempts) for k, r in found.items()} == {
        "7": ("accepted", 2), "dlq-0-1": ("accepted", 1)}
    assert found["7"].retried_at == at
