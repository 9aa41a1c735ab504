"""``bonychat outcome`` and ``bonychat dead-letters [retry]``: the operators' commands.

Both read the database (and, with ``BONYCHAT_KAFKA_BOOTSTRAP`` set, the Kafka DLQ
topic) through :mod:`services.dead_letters`; neither creates a store. ``retry``
re-submits through the normal pipeline of ``bonychat import``.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.cli.output import table, to_json
from services.cli.spec import EXIT_OK, Command, Failure
from services.composition import StorageUnavailable, embedded_pipeline, open_stores
from services.dead_letters.application.ports import (
    PUBLIC_FIELDS,
    SOURCES,
    DeadLetterEntry,
    DeadLetterFilter,
)
from services.settings import Settings

if TYPE_CHECKING:  # the operations service (and the deciding side) load when a command runs
    from services.conversation.application.processor import BatchResult
    from services.dead_letters.application.service import Operations, RetryReport

REASON_WIDTH = 70


def since_arg(text: str) -> datetime:
    """``--since``: a UTC date ``YYYY-MM-DD`` or an RFC 3339 timestamp with offset."""
    from services.dead_letters.application.service import since_moment

    try:
        return since_moment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def outcome_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", required=True, metavar="WS",
                        help="the workspace_id the event was sent for")
    parser.add_argument("event_id", metavar="EVENT_ID", help="the gateway's event_id")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="table (default, for people) or json")


def dead_letters_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", metavar="WS",
                        help="only this workspace (default: every workspace, and lines "
                             "that name none)")
    parser.add_argument("--since", type=since_arg, metavar="DATE",
                        help="only those received on or after DATE (YYYY-MM-DD, UTC) or "
                             "an RFC 3339 timestamp")
    parser.add_argument("--source", choices=SOURCES,
                        help="only from import files, HTTP, the Kafka gateway topic, or "
                             "undecodable command records")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="table (default), json (an array of objects) or csv")
    actions = parser.add_subparsers(dest="action", metavar="{retry}",
                                    parser_class=type(parser))
    retry = actions.add_parser("retry", help="re-submit dead letters through the pipeline",
                               description="Re-submit dead letters through the normal "
                                           "pipeline (de-duplication applies); each entry "
                                           "records its new outcome.")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="ids", action="extend", nargs="+", metavar="ID",
                       help="the dead letters to retry (ids as listed: 17, dlq-0-42)")
    which.add_argument("--all", action="store_true",
                       help="every dead letter not yet resolved by a retry")
    retry.add_argument("--database-url", default=argparse.SUPPRESS,
                       help="database (default: $BONYCHAT_DATABASE_URL or ./bonychat.db)")
    retry.add_argument("--dry-run", action="store_true",
                       help="only show what each entry would become; change nothing")
    retry.add_argument("--format", dest="retry_format", choices=("table", "json"),
                       default="table", help="table (default) or json")


@contextmanager
def _operations(settings: Settings) -> Iterator[Operations]:
    from services.composition.dead_letters import open_operations

    try:
        ops = open_operations(settings)
    except StorageUnavailable as exc:
        raise Failure(str(exc)) from None
    try:
        yield ops
    finally:
        ops.store.close()


def outcome(args: argparse.Namespace, settings: Settings) -> int:
    with _operations(settings) as ops:
        report = ops.outcome(args.workspace, args.event_id)
    if report is None:
        raise Failure(f"no event {args.event_id!r} in workspace {args.workspace!r}: never "
                      "received, or not processed yet")
    print(to_json(report.public()) if args.format == "json" else render_report(report.public()))
    return EXIT_OK


def dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "retry":
        return retry(args, settings)
    where = DeadLetterFilter(args.workspace, args.since, args.source)
    with _operations(settings) as ops:
        entries = ops.dead_letters(where)
    print(render_dead_letters(entries, args.format))
    return EXIT_OK


def retry(args: argparse.Namespace, settings: Settings) -> int:
    from services.dead_letters.application.service import UnknownDeadLetter

    with _operations(settings) as ops:
        try:
            entries, ends = ops.select(None if args.all else args.ids)
        except UnknownDeadLetter as exc:
            raise Failure(str(exc)) from None
        if args.dry_run:
            report = ops.retry(entries, None, dry_run=True)
        else:
            report = _retry(ops, entries, settings)
            if ends is not None and ops.dlq is not None:
                ops.dlq.commit_watermark(ops.watermark(entries, ends, report))
    print(to_json(report.public()) if args.retry_format == "json" else render_retry(report))
    return EXIT_OK


def _retry(ops: Operations, entries: Sequence[DeadLetterEntry], settings: Settings
           ) -> RetryReport:
    try:
        stores = open_stores(settings)
    except StorageUnavailable as exc:
        raise Failure(str(exc)) from None
    try:
        pipeline = embedded_pipeline(stores, settings)

        def submit(commands: Sequence[Any]) -> BatchResult:
            return pipeline.process_items(commands, source="retry")

        try:
            return ops.retry(entries, submit)
        except Exception as exc:
            raise Failure(f"retry failed, nothing was recorded (run it again): "
                          f"{type(exc).__name__}: {exc}") from None
    finally:
        stores.close()


# -- rendering -------------------------------------------------------------------------------

def _cell(value: Any, width: int | None = None) -> str:
    text = "-" if value is None else " ".join(str(value).split())
    return text if width is None or len(text) <= width else text[:width - 1] + "…"


def render_dead_letters(entries: Sequence[DeadLetterEntry], fmt: str) -> str:
    rows = [e.public() for e in entries]
    if fmt == "json":
        return to_json(rows)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(PUBLIC_FIELDS)
        for row in rows:
            writer.writerow(["" if row[f] is None else row[f] for f in PUBLIC_FIELDS])
        return buffer.getvalue().rstrip("\n")
    if not rows:
        return "(no dead letters)"
    headers = ["ID", "RECEIVED AT", "SOURCE", "WORKSPACE", "EVENT", "KAFKA", "REASON", "RETRY"]
    cells = [[r["id"], r["received_at"], r["source"], _cell(r["workspace_id"]),
              _cell(r["event_id"], 30),
              "-" if r["partition"] is None else f"{r['partition']}:{r['offset']}",
              _cell(r["reason"], REASON_WIDTH), _cell(r["retry_outcome"])] for r in rows]
    return table(headers, cells)


def render_report(report: dict[str, Any]) -> str:
    lines = [f"event     {report['workspace_id']} / {report['event_id']}",
             f"outcome   {report['outcome']}"]
    if report["reason"]:
        lines.append(f"reason    {report['reason']}")
    if report["event_type"]:
        lines += [f"type      {report['event_type']}", f"contact   {report['contact_id']}",
                  f"occurred  {report['occurred_at']}"]
    events = report["domain_events"]
    if events:
        lines += ["", f"domain events ({len(events)}):", table(
            ["EVENT TYPE", "CONTACT", "CONVERSATION", "OCCURRED AT", "EVENT ID"],
            [[e["event_type"], e["contact_id"], _cell(e.get("conversation_id")),
              e["occurred_at"], e["event_id"]] for e in events])]
    dead = report["dead_letters"]
    if dead:
        lines += ["", f"dead letters ({len(dead)}):", table(
            ["ID", "RECEIVED AT", "SOURCE", "REASON", "RETRY"],
            [[d["id"], d["received_at"], d["source"], _cell(d["reason"], REASON_WIDTH),
              _cell(d["retry_outcome"])] for d in dead])]
    return "\n".join(lines)


def render_retry(report: RetryReport) -> str:
    verb = "would retry" if report.dry_run else "retried"
    summary = ", ".join(f"{name} {count}" for name, count in report.summary().items())
    head = f"{verb} {len(report.results)} dead letters" + (f": {summary}" if summary else "")
    if not report.results:
        return "(no dead letters to retry)"
    rows = [[r.id, ("skipped: " if r.skipped else "") + r.outcome, _cell(r.reason, 90)]
            for r in report.results]
    return f"{head}\n{table(['ID', 'OUTCOME', 'REASON'], rows)}"


COMMANDS: tuple[Command, ...] = (
    Command("outcome", "what became of one gateway event", outcome_arguments, outcome),
    Command("dead-letters", "list dead letters, or retry them", dead_letters_arguments,
            dead_letters),
)
