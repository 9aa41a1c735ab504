"""In-memory stand-ins for the HTTP app's ports, for tests and local experiments."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.commands import CommandBase
from services.http.ports import SinkUnavailableError
from services.ingest.domain.normalise import Invalid


@dataclass
class RecordingSink:
    """An :class:`~services.http.ports.EventSink` that remembers every submitted batch.

    Set ``unavailable`` to make :meth:`submit` raise :class:`SinkUnavailableError`.
    """

    batches: list[list[CommandBase | Invalid]] = field(default_factory=list)
    unavailable: bool = False

    async def submit(self, items: list[CommandBase | Invalid]) -> None:
        if self.unavailable:
            raise SinkUnavailableError("recording sink is switched off")
        self.batches.append(list(items))

    @property
    def items(self) -> list[CommandBase | Invalid]:
        """Every submitted item, in submission order."""
        return [item for batch in self.batches for item in batch]
