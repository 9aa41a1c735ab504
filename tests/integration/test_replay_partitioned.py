"""``bonychat replay`` with one worker process per partition gives the one-process rows."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from test_store_contract import generate_lines, snapshot

from services.composition import Stores
from services.composition.postgres import open_postgres_stores
from services.in_process.pipeline import EmbeddedPipeline
from services.projections.adapters.deferred_indexes import SECONDARY
from services.projections.application import replay as partitioned
from services.projections.application.projector import EVENT_STORE_POSITION
from services.runtime.pg import connection_params


@pytest.fixture
def imported(postgres_url: str, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[tuple[Stores, dict[str, Any]]]:
    """A store with the sample imported, its rows, and partitioning from the first event."""
    stores = open_postgres_stores(postgres_url)
    try:
        EmbeddedPipeline(stores.events, stores.read_models, batch_size=150).run(
            generate_lines())
        monkeypatch.setattr(partitioned, "MIN_EVENTS", 0)
        stores.read_models.refresh_cells()  # the cells the live projection keeps
        yield stores, {**snapshot(stores), "cells": cells(stores)}
    finally:
        stores.close()


@pytest.mark.parametrize("workers", [2, 3])
def test_partitioned_replay_rebuilds_the_same_rows(imported: tuple[Stores, dict[str, Any]],
                                                   workers: int) -> None:
    stores, expected = imported
    before = indexes(stores)
    assert {name for name, _ in SECONDARY} < before
    replayed = EmbeddedPipeline(stores.events, stores.read_models).projection.replay(
        stores.events, workers=workers)
    newest = stores.events.max_notification_id()
    assert replayed == newest
    assert indexes(stores) == before
    assert stores.read_models.position(EVENT_STORE_POSITION) == newest
    assert {**snapshot(stores), "cells": cells(stores)} == expected


def indexes(stores: Stores) -> set[str]:
    """The names of the rows' indexes (the replay drops the secondary ones meanwhile)."""
    datastore = stores.read_models.datastore  # type: ignore[attr-defined]
    with datastore.transaction(commit=False) as curs:
        curs.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s "
                     "AND tablename = 'conversations'", (datastore.schema,))
        return {row["indexname"] for row in curs.fetchall()}


def cells(stores: Stores) -> list[tuple[Any, ...]]:
    """The metric cells (rebuilt by the replay in ``workers`` parts at once)."""
    datastore = stores.read_models.datastore  # type: ignore[attr-defined]
    with datastore.transaction(commit=False) as curs:
        curs.execute(f'SELECT * FROM "{datastore.schema}".metric_cells '
                     "ORDER BY workspace_id, dim, slot, kind, key")
        return [tuple(row.values()) for row in curs.fetchall()]


def test_a_failed_worker_falls_back_to_one_process(imported: tuple[Stores, dict[str, Any]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    stores, expected = imported

    def broken(*args: Any) -> None:
        raise RuntimeError("worker crashed")

    monkeypatch.setattr(partitioned, "_project_partition", broken)
    before = indexes(stores)
    projection = EmbeddedPipeline(stores.events, stores.read_models).projection
    assert projection.replay(stores.events, workers=2) == stores.events.max_notification_id()
    assert indexes(stores) == before  # dropped for the workers, built again
    stores.read_models.refresh_cells()  # type: ignore[attr-defined]
    assert {**snapshot(stores), "cells": cells(stores)} == expected


@pytest.mark.parametrize("workers", [2, 3])
def test_each_cell_is_written_once_by_the_worker_that_owns_it(
        imported: tuple[Stores, dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, workers: int) -> None:
    """The workers' own copies are every cell, none lost and none twice, with no rebuild
    from the rows (which would hide a lost or doubled cell)."""
    stores, expected = imported
    copy_cells = stores.read_models.copy_cells  # type: ignore[attr-defined]

    def recorded(rows: Iterable[tuple[Any, ...]]) -> int:  # in each worker
        rows = list(rows)
        name = multiprocessing.current_process().name
        (tmp_path / name).write_bytes(orjson.dumps([row[:5] for row in rows]))
        return int(copy_cells(rows))

    def no_rebuild(parts: int = 1) -> None:
        raise AssertionError("the cells were rebuilt from the rows")

    monkeypatch.setattr(stores.read_models, "copy_cells", recorded)
    monkeypatch.setattr(stores.read_models, "rebuild_cells", no_rebuild)
    projection = EmbeddedPipeline(stores.events, stores.read_models).projection
    assert projection.replay(stores.events, workers=workers) == \
        stores.events.max_notification_id()
    copied = [orjson.loads(path.read_bytes()) for path in sorted(tmp_path.iterdir())]
    assert len(copied) == workers and all(copied)  # every worker wrote a part
    keys = [tuple(key) for part in copied for key in part]
    assert len(keys) == len(set(keys)) == len(expected["cells"])
    assert {**snapshot(stores), "cells": cells(stores)} == expected


def test_cells_that_cannot_be_written_are_rebuilt_from_the_rows(
        imported: tuple[Stores, dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """One worker's copy of its cells fails after the other's went in: every cell is
    rebuilt from the rows (none doubled, none missing)."""
    stores, expected = imported
    copy_cells = stores.read_models.copy_cells  # type: ignore[attr-defined]

    def refused(rows: Iterable[tuple[Any, ...]]) -> int:  # in each worker
        if multiprocessing.current_process().name.endswith("-1"):
            (tmp_path / "refused").write_text(str(len(list(rows))))
            raise RuntimeError("no")
        return int(copy_cells(rows))

    monkeypatch.setattr(stores.read_models, "copy_cells", refused)
    projection = EmbeddedPipeline(stores.events, stores.read_models).projection
    assert projection.replay(stores.events, workers=2) == stores.events.max_notification_id()
    assert int((tmp_path / "refused").read_text()) > 0  # worker 1 had cells to write
    assert {**snapshot(stores), "cells": cells(stores)} == expected



def test_the_workers_copy_the_rows_without_the_secondary_indexes(
        imported: tuple[Stores, dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    stores, expected = imported
    copy_rows = stores.read_models.copy_rows  # type: ignore[attr-defined]

    datastore = stores.read_models.datastore  # type: ignore[attr-defined]

    def seen(rows: Any) -> None:  # in each worker: a connection of its own, not the pool's
        with psycopg.connect(**connection_params(datastore)) as conn:
            names = conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s AND "
                                 "tablename = 'conversations'", (datastore.schema,)).fetchall()
        (tmp_path / multiprocessing.current_process().name).write_bytes(
            orjson.dumps(sorted(row[0] for row in names)))
        copy_rows(rows)

    monkeypatch.setattr(stores.read_models, "copy_rows", seen)
    projection = EmbeddedPipeline(stores.events, stores.read_models).projection
    assert projection.replay(stores.events, workers=2) == stores.events.max_notification_id()
    assert [orjson.loads(path.read_bytes()) for path in sorted(tmp_path.iterdir())] == [
        ["conversations_pkey"], ["conversations_pkey"]]
    assert {name for name, _ in SECONDARY} < indexes(stores)
    assert {**snapshot(stores), "cells": cells(stores)} == expected
