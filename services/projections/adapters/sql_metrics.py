"""The metrics of CONTRACT §3 / §6.6 for a query: from the store's metric cells when it
has them and they are exact, else the Python reference.

:func:`services.projections.metrics.compute` is the reference. A store with
``aggregate_metrics`` (PostgreSQL: :mod:`.cells_postgres`, from the metric cells of
:mod:`.cells` through :mod:`.cell_metrics`) answers with the identical JSON or None;
on None, and on stores without it (SQLite), the facts of the query's window are read
and computed in Python.
"""

from __future__ import annotations

from typing import Any

from services.projections.application.ports import MetricsAggregator
from services.projections.domain.metrics import MetricsQuery, compute, fact_window
from services.projections.domain.service_levels import Schedule


def metrics(store: Any, query: MetricsQuery, schedule: Schedule | None = None) -> dict[str, Any]:
    """The metrics JSON (``schedule``: the workspace's business hours in force)."""
    window = fact_window(query)
    if isinstance(store, MetricsAggregator):
        found = store.aggregate_metrics(query, window, schedule)
        if found is not None:
            return found
    facts: Any = store.facts(query.workspace_id, window)
    return compute(query, facts, None if schedule is None else schedule.clock)
