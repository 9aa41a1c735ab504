"""Micro-benchmark of the embedded import's store step: events + outcomes into SQLite.

    .venv/bin/python -m bench.sqlite_store --events 1000000 --group 25000 \\
        --pragma cache_size=-65536 --pragma wal_autocheckpoint=16384

Inserts synthetic rows shaped like the import's (random contacts' aggregates, ~330-byte
event JSON, one outcome per event) with ``SQLiteEventStore.commit_rows`` in
transactions of ``--group`` events, on a fresh file, after the ``--pragma`` overrides.
Prints CPU (user + system) and wall µs per event. Not a test: run it to choose settings.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import tempfile
import time
import uuid
from pathlib import Path

from services.composition.sqlite import open_sqlite_stores


def rows(events: int, contacts: int, seed: int = 7) -> tuple[list[tuple], list[tuple]]:
    rng = random.Random(seed)
    ids = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(contacts)]
    versions = [0] * contacts
    state = b'{"schema_version":2,"event_type":"MessageReceived","x":"' + b"y" * 280 + b'"}'
    events_rows, outcomes = [], []
    for n in range(events):
        c = rng.randrange(contacts)
        versions[c] += 1
        events_rows.append((ids[c], versions[c], "MessageReceived", state))
        outcomes.append((f"ws{n % 5}", f"evt-{n:09d}", f"c{c:07d}", "message.received",
                         1_790_000_000_000_000 + n * 1_000_000, "accepted", None))
    return events_rows, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--group", type=int, default=25_000)
    parser.add_argument("--pragma", action="append", default=[])
    args = parser.parse_args()
    events_rows, outcomes = rows(args.events, args.contacts)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        stores = open_sqlite_stores(str(Path(tmp) / "store.db"))
        store = stores.events
        for pragma in args.pragma:
            with store.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
                c.execute(f"PRAGMA {pragma}")
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for start in range(0, args.events, args.group):
            store.commit_rows(events_rows[start:start + args.group],  # type: ignore[attr-defined]
                              outcomes[start:start + args.group], [], None)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        stores.close()
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    per = 1e6 / args.events
    print(f"group {args.group} {' '.join(args.pragma) or '(defaults)'}: CPU "
          f"{(user + system) * per:.1f} µs/event (user {user * per:.1f}, system "
          f"{system * per:.1f}), wall {wall * per:.1f} µs/event")


if __name__ == "__main__":
    main()
