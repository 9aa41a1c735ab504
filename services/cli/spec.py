"""What every ``bonychat`` subcommand is made of, and the helpers they share.

A subcommand is a :class:`Command`: its name, a one-line help, a function that
adds its arguments (each with a help text: a test walks the whole parser) and
the function that runs it. A module of commands exports ``COMMANDS``, a tuple of
them, and ``main.py`` lists the modules. Only commands declared with
``creates_store=True`` (``import``, ``serve``) may create a database; for every
other one ``main`` checks first that the store exists and otherwise exits 1 with
one line naming it (see :func:`services.composition.require_store`). A nested
subcommand can change that with ``parser.set_defaults(creates_store=...)``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import NoReturn

from services.composition import StorageUnavailable, Stores, open_stores
from services.projections.domain.metrics import calendar_date, time_zone
from services.settings import Settings

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
FORMATS = ("table", "json", "csv")

Runner = Callable[[argparse.Namespace, Settings], int]


class Failure(Exception):
    """A runtime failure reported as one line, exit status 1."""


class Parser(argparse.ArgumentParser):
    """Usage errors exit 2 with one line (pass it as ``parser_class`` to subparsers)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"bonychat: error: {message} (see 'bonychat --help')\n")


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand of ``bonychat``."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Runner
    #: False (the default): the command needs an existing store and never creates one
    creates_store: bool = False


def date_arg(text: str) -> date:
    """``--from``/``--to``: a ``YYYY-MM-DD`` calendar date."""
    try:
        return calendar_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def zone_arg(text: str) -> str:
    """``--tz``: an IANA time zone name."""
    try:
        return time_zone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_workspace(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--workspace", required=required, metavar="WS",
                        help="the workspace_id to read" + ("" if required else
                                                           " (default: every workspace)"))


def add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table (default, for people), json (the contract's shapes) "
                             "or csv (one line per row)")


@contextmanager
def cli_stores(settings: Settings) -> Iterator[Stores]:
    """The stores of ``settings``, closed afterwards; failing to open them is a Failure."""
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
