"""Micro-benchmark of the per-event validation and decoding on the hot path (issue 13).

On real generated lines (``bench.generate``), CPU µs per line of:

- ingest: ``parse`` (the fast envelope check, the model only when unsure) against
  ``parse_by_model`` (the pydantic model alone, as before), and their parts;
- conversation: ``read_command`` (the fast command decoder, the model when unsure)
  against ``CommandMessage.model_validate_json``.

    python -m bench.fastpath --events 50000 --rounds 5

Best of ``--rounds`` (process CPU time; the collector runs, the inputs are frozen).
Writes ``bench/results/fastpath-latest.json``.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from schemas.command_codec import read_command
from schemas.commands import CommandBase, CommandMessage
from services.ingest.domain.fast_envelope import fast_values
from services.ingest.domain.normalise import command_of, parse, parse_by_model
from services.runtime.sinks import encode_command

from .generate import Generator
from .report import RESULTS


def cpu_us(func: Callable[[Any], object], items: Sequence[Any], rounds: int) -> float:
    """Best CPU µs per item of ``func`` over ``rounds`` passes."""
    for item in items[:1000]:
        func(item)
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for item in items:
            func(item)
        best = min(best, time.process_time() - started)
    return round(best / len(items) * 1e6, 2)


def lines(events: int) -> list[bytes]:
    gen = Generator(events=events, contacts=max(100, events // 10))
    return [item.encode() if isinstance(item, str) else orjson.dumps(item) for item in gen]


def measure(events: int, rounds: int) -> dict[str, Any]:
    raw = lines(events)
    parsed = [parse(line) for line in raw]
    commands = [item for item in parsed if isinstance(item, CommandBase)]
    valid = [line for line, item in zip(raw, parsed, strict=True)
             if isinstance(item, CommandBase)]
    objects = [orjson.loads(line) for line in valid]
    values = [fast_values(obj) for obj in objects]
    records = [encode_command(cmd) for cmd in commands]
    gc.freeze()  # the inputs are not what the collector should walk
    model_validate = CommandMessage.model_validate_json
    result: dict[str, Any] = {
        "lines": len(raw), "valid": len(valid), "rounds": rounds,
        "load_average": os.getloadavg()[0],
        "ingest_parse_us": {"model (before)": cpu_us(parse_by_model, raw, rounds),
                            "fast (after)": cpu_us(parse, raw, rounds)},
        "ingest_parts_us": {
            "orjson.loads": cpu_us(orjson.loads, valid, rounds),
            "fast_values": cpu_us(fast_values, objects, rounds),
            "command_of": cpu_us(command_of, values, rounds),  # type: ignore[arg-type]
            "encode_command": cpu_us(encode_command, commands, rounds),
        },
        "command_decode_us": {"model (before)": cpu_us(model_validate, records, rounds),
                              "fast (after)": cpu_us(read_command, records, rounds)},
    }
    gc.unfreeze()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    result = measure(args.events, args.rounds)
    for key in ("ingest_parse_us", "ingest_parts_us", "command_decode_us"):
        print(key, " ".join(f"{name}={us}" for name, us in result[key].items()))
    print(f"load average {result['load_average']:.2f}; {result['lines']} lines, "
          f"{result['valid']} valid")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fastpath-latest.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
