"""Peak RSS of event JSON encoded on worker threads and freed on the event loop.

What the Kafka conversation service does with a batch's events: ``encode_event``
on a worker thread (``asyncio.to_thread``: the store's commit), the bytes kept
until the next batch, then freed on another thread. ``orjson`` alone (its bytes
as it returns them) against ``encode_event`` (a right-sized copy of orjson's
bytes) and pydantic's serialiser:

    python -m bench.encode_rss --mode orjson     # raw orjson output
    python -m bench.encode_rss --mode encode     # schemas.events.encode_event
    python -m bench.encode_rss --mode pydantic

Prints one JSON line with the process's peak RSS before and after 60 batches.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from bench import decide
from schemas.events import DomainEvent, encode_event
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.ingest.domain.normalise import Invalid


def events(count: int) -> list[DomainEvent]:
    """The events the domain decides for ``count`` generated gateway events."""
    found: list[DomainEvent] = []

    class Keep(decide.NullStore):
        def commit(self, events: Sequence[DomainEvent], *args: Any,
                   **kwargs: Any) -> list[int]:
            found.extend(events)
            return list(range(len(events)))

    items = [i for i in decide.commands(count, max(count // 10, 1)) if not isinstance(i, Invalid)]
    BatchUnitOfWork(Keep()).process(items, "bench")
    return found


def peak_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


async def run(encode: Callable[[DomainEvent], bytes], batch: list[DomainEvent],
              rounds: int) -> None:
    kept: list[bytes] = []
    for _ in range(rounds):  # the previous batch's bytes are freed here, on the loop
        kept = await asyncio.to_thread(lambda: [encode(e) for e in batch])
    del kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("orjson", "encode", "pydantic"), default="encode")
    parser.add_argument("--events", type=int, default=8_000)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args(argv)
    batch = events(args.events)
    encoders: dict[str, Callable[[DomainEvent], bytes]] = {
        "orjson": lambda e: orjson.dumps(e.__dict__, option=orjson.OPT_UTC_Z),
        "encode": encode_event,
        "pydantic": lambda e: e.__pydantic_serializer__.to_json(e),
    }
    start = peak_mib()
    asyncio.run(run(encoders[args.mode], batch, args.rounds))
    print(orjson.dumps({"bench": "encode_rss", "mode": args.mode, "events": len(batch),
                        "rounds": args.rounds, "peak_rss_mib_start": start,
                        "peak_rss_mib": peak_mib()}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
