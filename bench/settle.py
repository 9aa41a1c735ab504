"""Wait until PostgreSQL has done what a backlog left it to do (``bench.run``'s settled phase).

After a large backlog autovacuum has work on the measurement's tables: a VACUUM of
the insert-only tables after every 100,000 inserts (``pg_sql.TABLE_SETTINGS``), a
VACUUM of the tables with dead rows (the read model's updated rows) and an ANALYZE
of the tables whose rows changed. It starts that work when its launcher next
visits the database (``autovacuum_naptime``, 1 min), so a latency phase right
after the backlog may or may not overlap it. :func:`wait_settled` polls, once a
``poll`` seconds, ``pg_stat_user_tables`` (with each table's own autovacuum
settings from ``pg_class.reloptions`` over the server's) and
``pg_stat_progress_vacuum`` / ``_analyze`` for the schema's tables, and returns
when none is due for autovacuum or under VACUUM / ANALYZE (or after ``timeout``,
saying so). It does not wait for a checkpoint: at low load a checkpoint spreads
its writes over ``checkpoint_completion_target`` x ``checkpoint_timeout`` (13.5 min
here), so one is under way most of the time in a steady state too; what it costs
a phase is full-page images, which ``bench.dbwatch`` reports per second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from .dbwatch import IDLE_CHECKPOINTER

#: autovacuum's server settings, by the reloption of the same name that overrides each
SETTINGS = ("autovacuum_vacuum_threshold", "autovacuum_vacuum_scale_factor",
            "autovacuum_vacuum_insert_threshold", "autovacuum_vacuum_insert_scale_factor",
            "autovacuum_analyze_threshold", "autovacuum_analyze_scale_factor")
TABLES = (
    "SELECT s.relname, greatest(c.reltuples, 0), coalesce(c.reloptions, '{}'), "
    "       s.n_dead_tup, s.n_ins_since_vacuum, s.n_mod_since_analyze, "
    "       EXISTS (SELECT 1 FROM pg_stat_progress_vacuum v WHERE v.relid = s.relid), "
    "       EXISTS (SELECT 1 FROM pg_stat_progress_analyze a WHERE a.relid = s.relid) "
    "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.schemaname = %s")
SERVER = ("SELECT " + ", ".join(f"current_setting('{name}')::float8" for name in SETTINGS)
          + ", (SELECT wait_event FROM pg_stat_activity WHERE backend_type = 'checkpointer')")


@dataclass(frozen=True)
class Table:
    """One table's counters as autovacuum sees them."""

    name: str
    tuples: float
    options: dict[str, str]
    dead: int
    inserted: int  # since its last vacuum
    modified: int  # since its last analyze
    vacuuming: bool = False
    analyzing: bool = False


def due(table: Table, server: dict[str, float]) -> list[str]:
    """What autovacuum would start on ``table`` now (PostgreSQL's own formulas:
    threshold + scale factor x rows, each overridable per table); ``[]`` if nothing."""
    if table.options.get("autovacuum_enabled", "true").lower() in ("false", "off", "0"):
        return []

    def limit(kind: str) -> float:
        base, scale = (f"autovacuum_{kind}_threshold", f"autovacuum_{kind}_scale_factor")
        return (float(table.options.get(base, server[base]))
                + float(table.options.get(scale, server[scale])) * table.tuples)

    found = []
    if table.dead > limit("vacuum"):
        found.append("vacuum (dead rows)")
    if server["autovacuum_vacuum_insert_threshold"] >= 0 and table.inserted > limit(
            "vacuum_insert"):
        found.append("vacuum (inserts)")
    if table.modified > limit("analyze"):
        found.append("analyze")
    return found


def unsettled(tables: list[Table], server: dict[str, float]) -> dict[str, list[str]]:
    """Each table with work under way or due: what (``[]`` for none: settled)."""
    out: dict[str, list[str]] = {}
    for table in tables:
        said = (["vacuum under way"] if table.vacuuming else []) + (
            ["analyze under way"] if table.analyzing else []) + due(table, server)
        if said:
            out[table.name] = said
    return out


def _options(reloptions: list[str]) -> dict[str, str]:
    return dict(option.split("=", 1) for option in reloptions if "=" in option)


def look(conn: psycopg.Connection[Any], schema: str
         ) -> tuple[list[Table], dict[str, float], str | None]:
    """The schema's tables, autovacuum's server settings, the checkpointer's wait event."""
    row = conn.execute(SERVER.encode()).fetchone()
    assert row is not None
    server = dict(zip(SETTINGS, row[:-1], strict=True))
    tables = [Table(name, float(tuples), _options(list(options)), int(dead), int(inserted),
                    int(modified), bool(vacuuming), bool(analyzing))
              for name, tuples, options, dead, inserted, modified, vacuuming, analyzing
              in conn.execute(TABLES.encode(), (schema,)).fetchall()]
    return tables, server, row[-1]


def wait_settled(database_url: str, schema: str, timeout: float, poll: float = 1.0
                 ) -> dict[str, Any]:
    """Poll until no table of ``schema`` is due for autovacuum or being vacuumed /
    analysed, at most ``timeout`` s: how long it took, what it waited for (each
    table's reasons, as first seen), whether a checkpoint was under way at the end."""
    started = time.monotonic()
    waited_for: dict[str, list[str]] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            tables, server, checkpointer = look(conn, schema)
            pending = unsettled(tables, server)
            for name, reasons in pending.items():
                seen = waited_for.setdefault(name, [])
                seen += [r for r in reasons if r not in seen]
            elapsed = time.monotonic() - started
            if not pending or elapsed >= timeout:
                return {"settled": not pending, "waited_s": round(elapsed, 1),
                        "waited_for": waited_for, "still_pending": pending,
                        "checkpoint_under_way": checkpointer not in IDLE_CHECKPOINTER}
            time.sleep(poll)
