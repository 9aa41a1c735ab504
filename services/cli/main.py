"""``bonychat``: the command line of CONTRACT §4.

Exit status: 0 success, 2 usage error, 1 runtime failure; failures print one
line on stderr and no traceback. Output cut short by its reader (``| head``,
a closed socket) ends quietly with 0.

Subcommands are :class:`~services.cli.spec.Command` specs; a new module of
commands exports ``COMMANDS`` and is added to :data:`COMMANDS` below.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from eventsourcing.persistence import PersistenceError
from pydantic import ValidationError

from services.cli import commands, operators
from services.cli import service_levels as service_level_commands
from services.cli.spec import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Command, Failure, Parser
from services.composition import StorageUnavailable, require_store
from services.settings import Settings

#: every subcommand, in the order ``bonychat --help`` lists them
COMMANDS: tuple[Command, ...] = (*commands.COMMANDS, *operators.COMMANDS,
                                 *service_level_commands.COMMANDS)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # only --version reads it

    try:
        return version("bonychat")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


class _Version(argparse.Action):
    """``--version``: looks the version up only when asked (a replay does not pay for it)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> NoReturn:
        print(f"bonychat {package_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--database-url", default=argparse.SUPPRESS, metavar="URL",
                        help="SQLite file or postgresql:// URL "
                             "(default: $BONYCHAT_DATABASE_URL, else ./bonychat.db)")
    parser = Parser(prog="bonychat", parents=[common],
                    description="BonyChat conversation events: import gateway events, "
                                "read conversations and metrics, replay, serve.")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the version of bonychat and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser,
                                metavar="COMMAND", title="commands")
    for command in COMMANDS:
        child = sub.add_parser(command.name, parents=[common], help=command.help,
                               description=command.help)
        command.arguments(child)
        # ``main``: what a forked ``serve`` worker runs (services/runtime/worker_fork.py)
        child.set_defaults(run=command.run, creates_store=command.creates_store, main=main)
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
    try:
        if not args.creates_store:
            require_store(settings)
        status: int = args.run(args, settings)
        sys.stdout.flush()  # a reader gone away shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        if not _stdout_gone():
            print("bonychat: error: broken pipe", file=sys.stderr)
            return EXIT_FAILURE
        _discard_stdout()
        return EXIT_OK
    except (Failure, StorageUnavailable) as exc:
        print(f"bonychat: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except PersistenceError as exc:  # the database failed after start-up
        print(f"bonychat: error: database failure: {' '.join(str(exc).split())}",
              file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("bonychat: interrupted", file=sys.stderr)
        return 130


def _stdout_gone() -> bool:
    """True when standard output's reader has gone (a pipe or socket with no reader)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _discard_stdout() -> None:
    """Point standard output at /dev/null so nothing still buffered fails at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
