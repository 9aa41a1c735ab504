"""``bonychat``: the command line of CONTRACT §4.

Exit status: 0 success, 2 usage error, 1 runtime failure; failures print one
line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import IO, NoReturn

from eventsourcing.persistence import PersistenceError
from pydantic import ValidationError

from ..projections.metrics import GROUPINGS, MetricsQuery, calendar_date, time_zone
from ..settings import Settings

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class Failure(Exception):
    """A runtime failure reported as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"bonychat: error: {message} (see 'bonychat --help')\n")


def _date(text: str) -> date:
    try:
        return calendar_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _zone(text: str) -> str:
    try:
        return time_zone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--database-url", default=argparse.SUPPRESS,
                        help="database (default: $BONYCHAT_DATABASE_URL or ./bonychat.db)")
    parser = _Parser(prog="bonychat", parents=[common],
                     description="BonyChat conversation events: import, metrics, replay.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    imp = sub.add_parser("import", parents=[common], help="import a JSONL file of envelopes")
    imp.add_argument("file", help="JSONL file, or - for standard input")
    imp.add_argument("--no-progress", action="store_true", help="no progress on stderr")

    met = sub.add_parser("metrics", parents=[common], help="closed counts and resolution times")
    met.add_argument("--workspace", required=True)
    met.add_argument("--group-by", choices=GROUPINGS, default="day")
    met.add_argument("--from", dest="date_from", type=_date, metavar="DATE")
    met.add_argument("--to", dest="date_to", type=_date, metavar="DATE")
    met.add_argument("--tz", type=_zone, default="UTC")
    met.add_argument("--format", choices=("table", "json", "csv"), default="table")

    conv = sub.add_parser("conversations", parents=[common], help="list conversations")
    conv.add_argument("--workspace", required=True)
    conv.add_argument("--contact")
    conv.add_argument("--status", choices=("open", "closed"))
    conv.add_argument("--format", choices=("table", "json", "csv"), default="table")

    rep = sub.add_parser("replay", parents=[common], help="rebuild read models from events")
    rep.add_argument("--no-progress", action="store_true")

    from .operators import dead_letters_arguments, outcome_arguments

    outcome_arguments(sub.add_parser("outcome", parents=[common],
                                     help="what became of one gateway event"))
    dead_letters_arguments(sub.add_parser("dead-letters", parents=[common],
                                          help="list dead letters, or retry them"))

    serve = sub.add_parser("serve", parents=[common], help="run the services and HTTP API")
    serve.add_argument("--services", default="ingest,conversation,projections",
                       help="comma-separated subset of ingest,conversation,relay,projections "
                            "(the outbox relay also runs inside conversation unless "
                            "BONYCHAT_RELAY_WITH_CONVERSATION=0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = {"database_url": args.database_url} if "database_url" in args else {}
        settings = Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"bonychat: error: bad setting {'.'.join(map(str, first['loc']))}: "
              f"{first['msg']}", file=sys.stderr)
        return EXIT_USAGE
    from . import commands

    runner: Callable[[argparse.Namespace, Settings], int] = getattr(commands, args.command)
    try:
        return runner(args, settings)
    except Failure as exc:
        print(f"bonychat: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except PersistenceError as exc:  # the database failed after start-up
        print(f"bonychat: error: database failure: {' '.join(str(exc).split())}",
              file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("bonychat: interrupted", file=sys.stderr)
        return 130


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


def metrics_query(args: argparse.Namespace) -> MetricsQuery:
    return MetricsQuery(args.workspace, args.group_by, args.tz, args.date_from, args.date_to)


if __name__ == "__main__":
    sys.exit(main())
