"""A/B of ``bonychat replay``'s start-up: wall and CPU of a replay of an empty store.

    flock /work/bench.lock .venv/bin/python -m bench.replay_startup_ab --runs 20 \\
        --variant before@/work/wt/base --variant after

``make bench`` divides the events by the replay child's wall time, so its start-up
(interpreter, imports, connecting, resetting the read model) counts. An empty store
(``--database-url``, default ``$BONYCHAT_DATABASE_URL``: create it first, e.g.
``bonychat import --no-progress /dev/null``) leaves only that; the variants run
alternately and the medians are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True,
                        help="NAME or NAME@CHECKOUT (another worktree with its own .venv)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--database-url", default=os.environ.get("BONYCHAT_DATABASE_URL"))
    args = parser.parse_args()
    variants: dict[str, str] = {}
    for text in args.variant:
        name, _, checkout = text.partition("@")
        root = Path(checkout).resolve() if checkout else Path(__file__).resolve().parents[1]
        variants[name] = str(root / ".venv" / "bin" / "bonychat")
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    load = os.getloadavg()[0]
    for _ in range(args.runs):
        for name, program in variants.items():
            before, started = os.times(), time.perf_counter()
            subprocess.run([program, "--database-url", args.database_url, "replay",
                            "--no-progress"], check=True, stdout=subprocess.DEVNULL)
            walls[name].append(time.perf_counter() - started)
            after = os.times()
            cpus[name].append(after.children_user - before.children_user
                              + after.children_system - before.children_system)
    for name in variants:
        print(f"{name:8} wall median {1000 * statistics.median(walls[name]):.0f} ms "
              f"(min {1000 * min(walls[name]):.0f}), CPU median "
              f"{1000 * statistics.median(cpus[name]):.0f} ms, {args.runs} runs, "
              f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
