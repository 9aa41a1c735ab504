"""``/metrics`` of a ``serve`` with worker processes: its own metrics plus every worker's.

Each worker exposes its registry on a listener of its own (127.0.0.1, a port it
reports to the parent). Before each exposition the parent fetches them all
(:meth:`MergedRegistry.gather`) and :meth:`MergedRegistry.collect` adds them to
its own: samples with the same name and labels are summed (counters, histogram
buckets, sums and counts, gauges such as lags, which each have one owner), except
``*_created`` timestamps, where the earliest wins. The result reads like the
metrics of one process running every service. A worker that does not answer is
left out of that exposition (its ``worker:X`` health component says why).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

import aiohttp
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from services.http.telemetry import GatheredRegistry

log = logging.getLogger("bonychat.serve")
FETCH_TIMEOUT = 2.0
CREATED = "_created"


def _split_created(family: Metric) -> list[Metric]:
    """A family as the text parser returns it: ``*_created`` samples in their own gauge."""
    created = [s for s in family.samples if s.name.endswith(CREATED)]
    if not created or family.name.endswith(CREATED):
        return [family]
    main = Metric(family.name, family.documentation, family.type, family.unit)
    main.samples = [s for s in family.samples if not s.name.endswith(CREATED)]
    stamps = Metric(family.name + CREATED, family.documentation, "gauge")
    stamps.samples = created
    return [main, stamps]


def merge(groups: Iterable[Iterable[Metric]]) -> list[Metric]:
    """Families of several processes as one process's: same sample summed (see module doc)."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for families in groups:
        for raw in families:
            for family in _split_created(raw):
                if family.name not in merged:
                    merged[family.name] = Metric(family.name, family.documentation,
                                                 family.type, family.unit)
                    values[family.name] = {}
                into = values[family.name]
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    if key not in into:
                        into[key] = sample.value
                    elif sample.name.endswith(CREATED):
                        into[key] = min(into[key], sample.value)
                    else:
                        into[key] += sample.value
    for name, family in merged.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    return list(merged.values())


class MergedRegistry(GatheredRegistry):
    """This process's registry; its exposition includes the workers' (``ports()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: Callable[[], Sequence[int]] = list
        self._texts: list[str] = []

    async def gather(self) -> None:
        """Fetch every worker's exposition (called by ``GET /metrics`` before ``collect``)."""
        ports = list(self.ports())
        if not ports:
            self._texts = []
            return
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            texts = await asyncio.gather(*(_fetch(session, port) for port in ports))
        self._texts = [t for t in texts if t is not None]

    def collect(self) -> Iterable[Metric]:
        own = list(super().collect())
        if not self._texts:
            return own
        return merge([own, *(text_string_to_metric_families(t) for t in self._texts)])


async def _fetch(session: aiohttp.ClientSession, port: int) -> str | None:
    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as reply:
            return await reply.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("worker metrics on port %s unavailable: %s", port, exc)
        return None
