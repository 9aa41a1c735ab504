"""Use cases of CONTRACT §6 shared by the CLI and the HTTP API.

Queries read the workspace's settings in force now from the event store (the
default time zone and the business-hours schedule, §6.3/§6.6); the sweep asks
each contact with an expired-looking conversation to decide (§6.4): the read
model only names candidates, the contact aggregate decides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from schemas.commands import ExpireInactive
from schemas.workspace import WorkspaceSettings
from services.conversation.application.ports import EventStore
from services.conversation.application.workspaces import load_workspace
from services.projections.application.ports import MetricsAggregator, ReadModelStore
from services.projections.domain.metrics import MetricsQuery, compute, fact_window, to_us
from services.projections.domain.service_levels import Schedule, business_clock, schedule_of


def workspace_settings(events: EventStore, workspace_id: str) -> WorkspaceSettings:
    return load_workspace(events, workspace_id).settings


def metrics(events: EventStore, read_models: ReadModelStore, workspace_id: str, *,
            group_by: str, tz: str | None, date_from: date | None,
            date_to: date | None) -> dict[str, Any]:
    """The metrics JSON; ``tz`` None means the workspace's ``timezone``."""
    settings = workspace_settings(events, workspace_id)
    query = MetricsQuery(workspace_id, group_by, tz or settings.timezone, date_from, date_to)
    return metrics_of(read_models, query, schedule_of(settings))


def metrics_of(store: ReadModelStore, query: MetricsQuery,
               schedule: Schedule | None = None) -> dict[str, Any]:
    """The metrics JSON of CONTRACT §3 / §6.6 (``schedule``: the business hours in force).

    From the store's metric cells when it has them (:class:`MetricsAggregator`,
    PostgreSQL: ``adapters/cells_postgres.py``) and they are exact, else the Python
    reference (:func:`compute`) over the facts of the query's window (SQLite).
    """
    window = fact_window(query)
    if isinstance(store, MetricsAggregator):
        found = store.aggregate_metrics(query, window, schedule)
        if found is not None:
            return found
    facts: Any = store.facts(query.workspace_id, window)
    return compute(query, facts, None if schedule is None else schedule.clock)


def conversations(events: EventStore, read_models: ReadModelStore, workspace_id: str,
                  contact_id: str | None, status: str | None) -> list[dict[str, Any]]:
    """The conversation rows of CONTRACT §4/§6.6 (business seconds by the schedule now)."""
    clock = business_clock(workspace_settings(events, workspace_id))
    return [row.public(clock) for row in read_models.conversations(workspace_id, contact_id,
                                                                   status)]


def sweep_commands(events: EventStore, read_models: ReadModelStore, now: datetime,
                   workspace_id: str | None = None) -> list[ExpireInactive]:
    """One :class:`ExpireInactive` per contact whose open conversation looks expired at
    ``now`` by the read model (the aggregate checks again when it decides)."""
    workspaces: Sequence[str] = ([workspace_id] if workspace_id is not None
                                 else read_models.open_workspaces())
    event_id = f"sweep:{now.isoformat()}"
    commands: list[ExpireInactive] = []
    for ws in workspaces:
        timeout = load_workspace(events, ws).inactivity_timeout_seconds
        if timeout is None:
            continue
        cut = to_us(now - timedelta(seconds=timeout))
        commands.extend(
            ExpireInactive(workspace_id=ws, contact_id=contact, event_id=event_id,
                           event_type="sweep", occurred_at=now)
            for contact in read_models.expired_contacts(ws, cut))
    return commands


def close_inactive(events: EventStore, read_models: ReadModelStore, now: datetime,
                   process: Callable[[list[ExpireInactive]], int], *,
                   workspace_id: str | None = None, chunk: int = 1_000) -> int:
    """Run the sweep in-process: ``process`` decides, stores and projects a batch of
    sweep commands and returns how many conversations it closed."""
    commands = sweep_commands(events, read_models, now, workspace_id)
    return sum(process(commands[i:i + chunk]) for i in range(0, len(commands), chunk))
