"""The CLI's subcommands; each builds what it needs through the composition root."""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from ..bootstrap import StorageUnavailable, Stores, embedded_pipeline, open_stores
from ..ingest.parallel import ParallelParser
from ..projections.metrics import compute
from ..settings import Settings
from ..writer import WriterFailed, WriterProcess
from . import operators
from .main import EXIT_OK, Failure, metrics_query, read_lines
from .output import render_conversations, render_metrics, to_json


@contextmanager
def _stores(settings: Settings) -> Iterator[Stores]:
    try:
        stores = open_stores(settings)
    except StorageUnavailable as exc:
        raise Failure(str(exc)) from None
    except Exception as exc:  # driver errors: unreachable server, bad credentials…
        raise Failure(f"cannot open database: {type(exc).__name__}: {exc}") from None
    try:
        yield stores
    finally:
        stores.close()


@contextmanager
def progress_reporter(label: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on a terminal, a line every few seconds otherwise, or nothing."""
    if not enabled:
        yield lambda _n: None
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(desc=label, unit=" events", unit_scale=True, file=sys.stderr) as bar:
            yield bar.update
        return
    state = {"done": 0, "last": time.monotonic(), "start": time.monotonic()}

    def report(n: int) -> None:
        state["done"] += n
        now = time.monotonic()
        if now - state["last"] >= 5:
            rate = state["done"] / max(now - state["start"], 1e-9)
            print(f"{label}: {int(state['done'])} events ({rate:,.0f}/s)", file=sys.stderr)
            state["last"] = now

    yield report


def _tune_gc() -> None:
    """Bulk commands allocate millions of short-lived objects: collect less often."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def import_(args: argparse.Namespace, settings: Settings) -> int:
    _tune_gc()
    lines = read_lines(args.file)
    first = next(lines, None)  # surface an unreadable file before touching the database

    def all_lines() -> Iterator[bytes]:
        if first is not None:
            yield first
        yield from lines

    mode = settings.import_mode
    # "processes": a forked worker parses, another stores and projects, this one
    # decides; both are forked before this process opens the database.
    if mode == "processes" and not settings.is_postgres:
        with _stores(settings):  # create the schema (and SQLite's WAL mode) first
            pass
        try:
            with ParallelParser() as parser, \
                    WriterProcess(lambda: open_stores(settings)) as writer:
                with _stores(settings) as stores:
                    pipeline = embedded_pipeline(stores, settings)
                    with progress_reporter("import", not args.no_progress) as progress:
                        summary = pipeline.run_pipelined(all_lines(), writer, progress, parser)
                writer.finish()
        except WriterFailed as exc:
            raise Failure(f"{exc}; what was stored is kept, run the import again") from None
    else:  # on PostgreSQL, "processes" parses in a worker and stores from here
        with ExitStack() as stack:
            worker = stack.enter_context(ParallelParser()) if mode == "processes" else None
            stores = stack.enter_context(_stores(settings))
            pipeline = embedded_pipeline(stores, settings)
            with progress_reporter("import", not args.no_progress) as progress:
                summary = (pipeline.run_inline(all_lines(), progress) if mode == "inline"
                           else pipeline.run(all_lines(), progress, worker))
    print(to_json(summary.as_dict()))
    return EXIT_OK


def metrics(args: argparse.Namespace, settings: Settings) -> int:
    query = metrics_query(args)
    with _stores(settings) as stores:
        result = compute(query, stores.read_models.facts(query.workspace_id))
    print(render_metrics(result, args.format))
    return EXIT_OK


def conversations(args: argparse.Namespace, settings: Settings) -> int:
    with _stores(settings) as stores:
        rows = stores.read_models.conversations(args.workspace, args.contact, args.status)
    print(render_conversations([r.public() for r in rows], args.format))
    return EXIT_OK


def replay(args: argparse.Namespace, settings: Settings) -> int:
    _tune_gc()
    with _stores(settings) as stores:
        pipeline = embedded_pipeline(stores, settings)
        started = time.monotonic()
        with progress_reporter("replay", not args.no_progress) as progress:
            count = pipeline.projection.replay(stores.events, progress=progress)
        elapsed = time.monotonic() - started
    print(to_json({"replayed_events": count, "seconds": round(elapsed, 3)}))
    return EXIT_OK


def serve(args: argparse.Namespace, settings: Settings) -> int:
    from ..runtime.serve import run_serve

    return run_serve(args.services, settings)


# ``import`` is a keyword; the dispatcher looks commands up by name.
globals()["import"] = import_
globals()["dead-letters"] = operators.dead_letters
outcome = operators.outcome
