"""Wait until a Kafka broker answers metadata requests with at least one broker.

Usage: wait_ready.py --bootstrap HOST:PORT [--timeout 90] [--pid PID]
Exit 0 when ready; 1 on timeout; 2 if --pid is given and that process died.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _probe(bootstrap: str) -> bool:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=4)
        return bool(client.cluster.brokers())
    except Exception:  # any failure just means "not yet"
        return False
    finally:
        await client.close()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--bootstrap", default=os.environ.get("BONYCHAT_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    )
    ap.add_argument("--timeout", type=float, default=90.0)
    ap.add_argument("--pid", type=int, default=None)
    args = ap.parse_args()

    # aiokafka logs every refused connection at ERROR while the broker boots.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not _alive(args.pid):
            return 2
        if await _probe(args.bootstrap):
            return 0
        await asyncio.sleep(0.5)
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
