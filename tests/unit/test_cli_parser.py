"""The ``bonychat`` argument parser: every option of every command explains itself."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from services.cli.main import COMMANDS, build_parser
from services.cli.output import date_window


def parsers(parser: argparse.ArgumentParser, path: str = "bonychat"
            ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser and every subcommand's parser below it, nested ones included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, f"{path} {name}")


def undocumented(parser: argparse.ArgumentParser) -> Iterator[str]:
    for path, each in parsers(parser):
        for action in each._actions:
            if isinstance(action, argparse._SubParsersAction):
                described = {choice.dest for choice in action._choices_actions
                             if (choice.help or "").strip()}
                yield from (f"{path} {name}" for name in action.choices
                            if name not in described)
            elif not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                yield f"{path}: {'/'.join(action.option_strings) or action.dest}"


def test_every_option_and_command_has_a_help_text() -> None:
    assert list(undocumented(build_parser())) == []


def test_the_walk_finds_a_missing_help_text() -> None:
    parser = build_parser()
    child = next(p for path, p in parsers(parser) if path == "bonychat metrics")
    child.add_argument("--silent")
    sub = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    assert isinstance(sub, argparse._SubParsersAction)
    sub.add_parser("hidden")
    assert list(undocumented(parser)) == ["bonychat hidden", "bonychat metrics: --silent"]


def test_every_command_is_reachable_and_only_import_and_serve_create_a_store() -> None:
    parser = build_parser()
    names = [path.removeprefix("bonychat ") for path, _ in parsers(parser)][1:]
    assert [c.name for c in COMMANDS] == [n for n in names if " " not in n]
    core = {"import": True, "serve": True, "metrics": False, "conversations": False,
            "replay": False}
    assert {c.name: c.creates_store for c in COMMANDS if c.name in core} == core


@pytest.mark.parametrize(("date_from", "date_to", "words"), [
    (None, None, "all dates"),
    ("2026-10-01", None, "from 2026-10-01 on"),
    (None, "2026-10-31", "up to 2026-10-31"),
    ("2026-10-01", "2026-10-31", "2026-10-01 to 2026-10-31"),
])
def test_metrics_title_says_which_dates(date_from: str | None, date_to: str | None,
                                        words: str) -> None:
    assert date_window(date_from, date_to) == words
