"""A/B of ``bonychat replay`` on PostgreSQL: wall time and CPU per event, client and server.

    flock /work/bench.lock .venv/bin/python -m bench.replay_ab --schema NAME \\
        --variant before@/work/wt/base --variant after --rounds 2

Replays the events already in ``--schema`` (fill it once, e.g. ``bonychat import`` of a
generated file with ``BONYCHAT_DATABASE_URL=...?schema=NAME``) with each variant's
``bonychat`` in turn (before, after, before, after, ...). CPU is what a shared machine
cannot blur much: the client's (``bonychat replay`` and its forked workers, from
``wait4``) and PostgreSQL's (every backend whose ``application_name`` is this run's,
from ``/proc``, sampled every 50 ms until it ends). Writes
``bench/results/replay-ab-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg

from .procs import TICK
from .report import RESULTS
from .run import infra_env


def _backend_cpu(url: str, app: str, stop: threading.Event) -> dict[int, float]:
    """CPU seconds of every backend named ``app`` (the last value seen of each)."""
    seen: dict[int, float] = {}
    with psycopg.connect(url, autocommit=True, application_name="bench-replay-watch") as conn:
        while not stop.is_set():
            pids = [row[0] for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,))]
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                seen[pid] = (int(fields[11]) + int(fields[12])) / TICK
            stop.wait(0.05)
    return seen


def run_once(program: str, url: str, schema: str, tag: str) -> dict[str, Any]:
    app = f"bench-replay-{tag}-{time.time_ns()}"
    env = {**os.environ, "BONYCHAT_DATABASE_URL": f"{url}{'&' if '?' in url else '?'}"
           f"schema={schema}", "PGAPPNAME": app}
    stop = threading.Event()
    result: dict[int, float] = {}
    watcher = threading.Thread(target=lambda: result.update(_backend_cpu(url, app, stop)))
    watcher.start()
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen([program, "replay", "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{program} replay failed: {err.decode()[-2000:]}")
    replayed = orjson.loads(out)
    events = int(replayed["replayed_events"])
    return {"wall_s": round(wall, 2), "events": events, "events_per_s": round(events / wall),
            "internal_s": replayed["seconds"], "load_before": round(load, 2),
            "server_cpu_s": round(sum(result.values()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", required=True)
    parser.add_argument("--variant", action="append", required=True,
                        help="NAME or NAME@CHECKOUT (another worktree with its own .venv)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--url", help="PostgreSQL URL (default: the infra's), e.g. a private "
                        "cluster with pg_stat_statements")
    args = parser.parse_args()
    url = args.url or infra_env()[1]
    variants = []
    for text in args.variant:
        name, _, checkout = text.partition("@")
        root = Path(checkout).resolve() if checkout else Path(__file__).resolve().parents[1]
        variants.append((name, str(root / ".venv" / "bin" / "bonychat")))
    runs = []
    for round_ in range(1, args.rounds + 1):
        for name, program in variants:
            before = os.times()
            run = run_once(program, url, args.schema, name)
            after = os.times()
            client = (after.children_user - before.children_user
                      + after.children_system - before.children_system)
            run.update(variant=name, round=round_, client_cpu_s=round(client, 2),
                       client_us_per_event=round(1e6 * client / run["events"], 2),
                       server_us_per_event=round(1e6 * run["server_cpu_s"] / run["events"], 2))
            runs.append(run)
            print(f"{name:8} round {round_}: {run['wall_s']:6.2f} s "
                  f"({run['events_per_s']:,}/s), CPU µs/event client "
                  f"{run['client_us_per_event']}, PostgreSQL {run['server_us_per_event']}, "
                  f"load {run['load_before']}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"replay-ab-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_bytes(orjson.dumps({"schema": args.schema, "runs": runs},
                                  option=orjson.OPT_INDENT_2))
    print(path)


if __name__ == "__main__":
    main()
