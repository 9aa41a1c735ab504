"""What the HTTP app needs from the runtime that hosts it."""

from __future__ import annotations

from typing import Protocol

from schemas.commands import CommandBase
from services.ingest.domain.normalise import Invalid


class SinkUnavailableError(Exception):
    """The sink cannot take events right now (broker down, shutting down…).

    The ingest endpoint answers 503 with ``Retry-After`` so the gateway retries;
    nothing of the request may have been handed over when this is raised.
    """


class EventSink(Protocol):
    """Where ``POST /v1/events`` hands over what it parsed.

    The Kafka sink produces commands to the command topic and invalid items to
    the DLQ; the embedded sink runs them through the in-process pipeline.
    """

    async def submit(self, items: list[CommandBase | Invalid]) -> None:
        """Take the items of one request, valid and invalid, in request order.

        Returns once the items are durably handed over (or processed); raises
        :class:`SinkUnavailableError` when they were not.
        """
        ...
