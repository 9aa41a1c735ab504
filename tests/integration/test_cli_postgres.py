"""The installed ``bonychat`` on PostgreSQL: commands that read create no tables."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import psycopg
import pytest
from conftest import libpq_url

from tests.e2e.test_cli import LINES, bonychat_command

pytestmark = pytest.mark.integration


def schema_exists(url: str) -> bool:
    schema = dict(parse_qsl(urlsplit(url).query))["schema"]
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        return row.fetchone() is not None


def run(url: str, folder: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BONYCHAT_")}
    return subprocess.run([*bonychat_command(), *args, "--database-url", url], input=stdin,
                          text=True, capture_output=True, env=env, cwd=folder, timeout=120,
                          check=False)


@pytest.mark.parametrize("args", [["metrics", "--workspace", "ws1"],
                                  ["conversations", "--workspace", "ws1"], ["replay"]])
def test_reading_a_schema_without_tables_exits_1_and_creates_nothing(
        postgres_url: str, tmp_path: Path, args: list[str]) -> None:
    done = run(postgres_url, tmp_path, *args)
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "no BonyChat tables" in done.stderr and "bonychat import" in done.stderr
    assert not schema_exists(postgres_url)
    assert run(postgres_url, tmp_path, "import", "-", stdin=LINES[0]).returncode == 0
    rows = run(postgres_url, tmp_path, "conversations", "--workspace", "ws1", "--format", "json")
    assert rows.returncode == 0, rows.stderr
    assert [r["contact_id"] for r in json.loads(rows.stdout)] == ["c1"]


def test_a_store_missing_indexes_gets_them_back_from_a_reading_command(
        postgres_url: str, tmp_path: Path) -> None:
    """A store of an older version (indexes added since): replay used to refuse it."""
    assert run(postgres_url, tmp_path, "import", "-", stdin="\n".join(LINES)).returncode == 0
    schema = dict(parse_qsl(urlsplit(postgres_url).query))["schema"]
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as conn:
        conn.execute(f'DROP INDEX "{schema}".conversations_ws_opened, '
                     f'"{schema}".conversations_ws_closed')
    done = run(postgres_url, tmp_path, "replay", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["replayed_events"] > 0
    with psycopg.connect(libpq_url(postgres_url)) as conn:
        found = {row[0] for row in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,))}
    assert {"conversations_ws_opened", "conversations_ws_closed"} <= found
