"""The core subcommands (import, metrics, conversations, replay, serve).

Each builds what it needs through the composition root; see ``spec.py`` for
what a command is made of.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import IO

from services.cli.output import render_conversations, render_metrics, to_json
from services.cli.spec import (
    EXIT_OK,
    Command,
    Failure,
    add_format,
    add_workspace,
    cli_stores,
    date_arg,
    zone_arg,
)
from services.composition import embedded_pipeline, open_stores, projection, writer_pipeline
from services.projections.application import queries as service_levels
from services.projections.domain.metrics import GROUPINGS
from services.runtime.gc_tuning import pause_gc, resume_gc, tune_gc
from services.settings import Settings


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


def import_(args: argparse.Namespace, settings: Settings) -> int:
    from services.bulk_import.parse import ParallelParser  # only the import needs these
    from services.bulk_import.writer import WriterFailed, WriterProcess

    tune_gc(settings)
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
        with cli_stores(settings):  # create the schema (and SQLite's WAL mode) first
            pass
        try:
            with ParallelParser() as parser, \
                    WriterProcess(lambda: open_stores(settings), writer_pipeline) as writer:
                with cli_stores(settings) as stores:
                    pipeline = embedded_pipeline(stores, settings)
                    with progress_reporter("import", not args.no_progress) as progress:
                        summary = pipeline.run_pipelined(all_lines(), writer, progress, parser)
                writer.finish()
        except WriterFailed as exc:
            raise Failure(f"{exc}; what was stored is kept, run the import again") from None
    else:  # on PostgreSQL, "processes" parses in a worker and stores from here
        with ExitStack() as stack:
            worker = stack.enter_context(ParallelParser()) if mode == "processes" else None
            stores = stack.enter_context(cli_stores(settings))
            pipeline = embedded_pipeline(stores, settings)
            with progress_reporter("import", not args.no_progress) as progress:
                summary = (pipeline.run_inline(all_lines(), progress) if mode == "inline"
                           else pipeline.run(all_lines(), progress, worker))
    print(to_json(summary.as_dict()))
    return EXIT_OK


def read_lines(path: str) -> Iterator[bytes]:
    """Lines of ``path`` (``-`` = stdin) as bytes; unreadable files raise Failure."""
    if path == "-":
        yield from sys.stdin.buffer
        return
    try:
        handle: IO[bytes] = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        try:
            first = handle.readline()
            if first:
                yield first.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM is not content
            yield from handle
        except OSError as exc:
            raise Failure(f"cannot read {path}: {exc.strerror or exc}") from None


def metrics(args: argparse.Namespace, settings: Settings) -> int:
    with cli_stores(settings) as stores:
        result = service_levels.metrics(
            stores.events, stores.read_models, args.workspace, group_by=args.group_by,
            tz=args.tz, date_from=args.date_from, date_to=args.date_to)
    print(render_metrics(result, args.format))
    return EXIT_OK


def conversations(args: argparse.Namespace, settings: Settings) -> int:
    with cli_stores(settings) as stores:
        rows = service_levels.conversations(stores.events, stores.read_models, args.workspace,
                                            args.contact, args.status)
    print(render_conversations(rows, args.format))
    return EXIT_OK


def replay(args: argparse.Namespace, settings: Settings) -> int:
    tune_gc(settings)
    with cli_stores(settings) as stores:
        rebuild = projection(stores)
        started = time.monotonic()
        with progress_reporter("replay", not args.no_progress) as progress:
            count = rebuild.replay(stores.events, progress=progress,
                                               workers=settings.replay_workers)
        elapsed = time.monotonic() - started
    print(to_json({"replayed_events": count, "seconds": round(elapsed, 3)}))
    return EXIT_OK


def serve(args: argparse.Namespace, settings: Settings) -> int:
    pause_gc()  # until start-up is done (serve resumes it): loading code makes no garbage
    try:
        from services.runtime.serve import run_serve
        from services.runtime.worker_side import WorkerLink

        worker = (WorkerLink(args.worker_fd, args.worker_of, args.worker_go)
                  if args.worker_fd is not None and args.worker_of is not None else None)
        return run_serve(args.services, settings, worker,
                         child_main=getattr(args, "main", None))
    finally:
        resume_gc()


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="JSONL file of gateway envelopes, or - for standard input")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar or progress lines on stderr")


def _metrics_arguments(parser: argparse.ArgumentParser) -> None:
    add_workspace(parser)
    parser.add_argument("--group-by", choices=GROUPINGS, default="day",
                        help="one row per day (default), week or month in --tz, or per "
                             "channel, opened_by, closed_by, assignee or team")
    parser.add_argument("--from", dest="date_from", type=date_arg, metavar="DATE",
                        help="first local date counted, YYYY-MM-DD (default: no lower bound)")
    parser.add_argument("--to", dest="date_to", type=date_arg, metavar="DATE",
                        help="last local date counted, YYYY-MM-DD, inclusive "
                             "(default: no upper bound)")
    parser.add_argument("--tz", type=zone_arg, default=None, metavar="ZONE",
                        help="IANA time zone of the dates and of --from/--to, "
                             "e.g. Europe/Berlin (default: the workspace's timezone "
                             "setting, UTC unless set)")
    add_format(parser)


def _conversations_arguments(parser: argparse.ArgumentParser) -> None:
    add_workspace(parser)
    parser.add_argument("--contact", metavar="CONTACT_ID",
                        help="only this contact's conversations")
    parser.add_argument("--status", choices=("open", "closed"),
                        help="only open or only closed conversations (default: both)")
    add_format(parser)


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar or progress lines on stderr")


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--services", default="ingest,conversation,projections",
                        help="comma-separated subset of ingest,conversation,relay,projections "
                             "(the outbox relay also runs inside conversation unless "
                             "BONYCHAT_RELAY_WITH_CONVERSATION=0); "
                             "`http` alone serves only the HTTP API")
    # services/runtime/workers.py: what a serve gives the worker processes it starts
    parser.add_argument("--worker-fd", type=int, metavar="FD",
                        help="internal, set by serve for its worker processes: the pipe to "
                             "report the worker's metrics port on")
    parser.add_argument("--worker-of", type=int, metavar="PID",
                        help="internal, set by serve for its worker processes: the parent "
                             "serve (the worker stops when it dies)")
    parser.add_argument("--worker-go", type=int, metavar="FD",
                        help="internal, set by serve for its worker processes: wait for the "
                             "parent's go on this pipe before starting")


COMMANDS: tuple[Command, ...] = (
    Command("import", "import a JSONL file of gateway envelopes", _import_arguments, import_,
            creates_store=True),
    Command("metrics", "conversations opened and closed, and resolution times",
            _metrics_arguments, metrics),
    Command("conversations", "list a workspace's conversations", _conversations_arguments,
            conversations),
    Command("replay", "rebuild every read model from the event store", _replay_arguments,
            replay),
    Command("serve", "run the services and the HTTP API", _serve_arguments, serve,
            creates_store=True),
)
