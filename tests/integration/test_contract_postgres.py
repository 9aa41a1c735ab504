"""CONTRACT §5: "the CLI commands of §4 work unchanged against PostgreSQL".

The black-box acceptance tests of tests/e2e/test_contract_*.py (lifecycle,
metrics, envelope, CLI), re-collected here with a ``contract`` fixture whose
database is a fresh PostgreSQL schema: the same installed ``bonychat import``,
``bonychat serve`` (no Kafka) and CLI queries, the same hand-computed answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.e2e.conftest import Contract, start_contract
from tests.e2e.test_contract_acceptance import *  # noqa: F403
from tests.e2e.test_contract_cli import (  # noqa: F401
    test_cli_metrics_json_equals_http_metrics,
    test_conversations_sorted_by_opened_at_then_contact_with_row_fields_in_order,
    test_database_url_option_and_environment_select_the_database,
    test_metrics_csv_has_one_line_per_row_sorted_by_key,
)
from tests.e2e.test_contract_lifecycle import *  # noqa: F403
from tests.e2e.test_contract_metrics import *  # noqa: F403
from tests.e2e.test_contract_service_levels import *  # noqa: F403
from tests.e2e.test_contract_settings import (  # noqa: F401
    test_business_seconds_are_the_part_inside_the_schedule_dst_correct,
    test_business_seconds_use_the_schedule_in_force_at_query_time,
    test_inactivity_closes_at_last_activity_plus_timeout_before_the_next_event,
    test_inactivity_closings_count_as_closed_but_not_in_resolution,
    test_invalid_settings_are_400_with_the_reason_and_change_nothing,
    test_metrics_default_to_the_workspace_timezone,
    test_serve_sweeps_at_least_once_a_minute_with_the_wall_clock,
    test_settings_get_fills_in_defaults_for_analytics_and_admin_tokens,
    test_settings_put_replaces_the_given_keys_and_null_resets_one,
)
from tests.integration.conftest import libpq_url, with_query

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def contract(postgres_database_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Contract]:
    schema = f"acc_{uuid.uuid4().hex[:12]}"
    try:
        yield from start_contract(with_query(postgres_database_url, schema=schema),
                                  tmp_path_factory.mktemp("contract-pg"))
    finally:
        with psycopg.connect(libpq_url(postgres_database_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))
