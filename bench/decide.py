"""Micro-benchmark of deciding: the conversation service's domain path alone.

Generated gateway envelopes (``bench.generate``) are parsed into commands once,
outside the clock; then :class:`BatchUnitOfWork` decides and "commits" them in
batches against a store that keeps nothing (no I/O) but encodes every event as
every real store does (``encode_event``). What is timed is what the Kafka
conversation service, the embedded pipeline and ``bonychat import`` share:
dedupe, the aggregate cache, the handlers, building the domain events and their
deterministic ids, encoding them, and freeing the previous batch.

    python -m bench.decide --events 100000 --contacts 10000 --batch 5000 --rounds 3
    python -m bench.decide --records ...   # from command records: the decode timed too
    python -m bench.decide --gateway ...   # from gateway records: ingest's parse timed too

With ``--records`` the commands are encoded as ingest writes them to the command
topic and each round decodes them first (``read_command``, as the Kafka
conversation service does), inside the clock. With ``--gateway`` each round
parses the gateway records themselves (ingest's ``parse``, as the conversation
service does with ``BONYCHAT_CONVERSATION_INPUT=gateway``), inside the clock.

Prints one JSON line: CPU µs per command (process time) (best and median of the rounds), events
recorded per command, and the collector's share when ``--gc`` is ``default``.
The collector is tuned as ``bonychat serve`` tunes it (``--gc tuned``, default).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import uuid
from collections.abc import Collection, Mapping, Sequence

import orjson

from bench.generate import Generator
from schemas.command_codec import read_command
from schemas.commands import CommandBase
from schemas.events import DomainEvent, encode_event
from services.conversation.application.ports import DeadLetter, Outcome, Position
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.ingest.domain.normalise import Invalid, parse
from services.runtime.gc_tuning import THRESHOLDS
from services.runtime.sinks import encode_command


class NullStore:
    """An event store that remembers nothing; ``commit`` encodes the events only."""

    def __init__(self) -> None:
        self.events = 0
        self.encoded = 0

    def load(self, originator_id: uuid.UUID) -> list[DomainEvent]:
        return []

    def load_many(self, originator_ids: Collection[uuid.UUID]
                  ) -> dict[uuid.UUID, list[DomainEvent]]:
        return {}

    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        return set()

    def commit(self, events: Sequence[DomainEvent], outcomes: Sequence[Outcome],
               dead_letters: Sequence[DeadLetter], position: Position | None,
               read: Mapping[uuid.UUID, int] | None = None, *,
               originators: Sequence[uuid.UUID] | None = None) -> list[int]:
        encoded = [encode_event(e) for e in events]
        self.encoded += sum(map(len, encoded))
        first = self.events + 1
        self.events += len(events)
        return list(range(first, first + len(events)))

    def position(self, name: str) -> int | None:
        return None

    def read(self, after: int, limit: int) -> list[tuple[int, DomainEvent]]:
        return []

    def max_notification_id(self) -> int:
        return self.events


def gateway_records(events: int, contacts: int) -> list[bytes]:
    """The generated envelopes as gateway records (bytes)."""
    return [orjson.dumps(item) if isinstance(item, dict) else item.encode()
            if isinstance(item, str) else item
            for item in Generator(events=events, contacts=contacts, workspaces=5)]


def commands(events: int, contacts: int) -> list[CommandBase | Invalid]:
    """The generated envelopes as the conversation service receives them."""
    return [parse(raw) for raw in gateway_records(events, contacts)]


def one_round(items: list[CommandBase | Invalid], batch: int,
              records: list[bytes] | None = None, *, gateway: bool = False
              ) -> tuple[float, int]:
    """Seconds to decide and commit every item in batches (decoding ``records``
    instead, if given, or parsing them as gateway records with ``gateway``); events
    recorded."""
    store = NullStore()
    uow = BatchUnitOfWork(store)
    gc.collect()
    started = time.process_time()
    for start in range(0, len(items), batch):
        chunk: list[CommandBase | Invalid] = (
            items[start:start + batch] if records is None
            else [parse(r) for r in records[start:start + batch]] if gateway
            else [read_command(r) for r in records[start:start + batch]])
        uow.process(chunk, "bench")
    elapsed = time.process_time() - started
    return elapsed, store.events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gc", choices=("tuned", "default"), default="tuned")
    parser.add_argument("--records", action="store_true",
                        help="decode command records (as the Kafka service) inside the clock")
    parser.add_argument("--gateway", action="store_true",
                        help="parse gateway records (the gateway input) inside the clock")
    args = parser.parse_args(argv)
    items = commands(args.events, args.contacts)
    records = None
    if args.gateway:
        records = gateway_records(args.events, args.contacts)
    elif args.records:
        items = [item for item in items if not isinstance(item, Invalid)]
        records = [encode_command(item) for item in items]  # type: ignore[arg-type]
    if args.gc == "tuned":
        gc.freeze()
        gc.set_threshold(*THRESHOLDS)
    times: list[float] = []
    recorded = 0
    for _ in range(args.rounds):
        elapsed, recorded = one_round(items, args.batch, records, gateway=args.gateway)
        times.append(elapsed)
    per = [t / len(items) * 1e6 for t in times] or [0.0]
    print(orjson.dumps({
        "bench": "decide", "commands": len(items), "batch": args.batch,
        "records": args.records, "gateway": args.gateway,
        "events_per_command": round(recorded / len(items), 3), "gc": args.gc,
        "us_per_command_best": round(min(per), 2),
        "us_per_command_median": round(statistics.median(per), 2),
        "rounds": [round(p, 2) for p in per]}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
