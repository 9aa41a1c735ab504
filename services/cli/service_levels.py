"""``bonychat workspace set|show`` and ``bonychat close-inactive`` (CONTRACT §6.1, §6.4)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from schemas.workspace import SettingsError
from schemas.workspace_text import (
    format_business_hours,
    format_duration,
    parse_business_hours,
    parse_duration,
)
from services.cli.output import table, to_json
from services.cli.spec import Command, Parser, cli_stores
from services.conversation.application.workspaces import (
    SettingsChange,
    change_settings,
    load_workspace,
)
from services.projections.application.queries import close_inactive as sweep
from services.settings import Settings

if TYPE_CHECKING:
    from schemas.commands import ExpireInactive

EXIT_OK, EXIT_USAGE = 0, 2


def _workspace_arguments(ws: argparse.ArgumentParser) -> None:
    actions = ws.add_subparsers(dest="action", required=True, parser_class=Parser,
                                metavar="ACTION")
    put = actions.add_parser("set", help="change settings (stored as an event)",
                             description="change settings (stored as an event)")
    put.set_defaults(creates_store=True)
    put.add_argument("--workspace", required=True, metavar="WS", help="the workspace_id")
    put.add_argument("--timezone", metavar="ZONE", help="IANA time zone, e.g. Europe/Berlin")
    put.add_argument("--business-hours", metavar="SPEC",
                     help="e.g. 'mon-fri 09:00-18:00, sat 10:00-14:00', or none")
    put.add_argument("--auto-close-after", metavar="DURATION",
                     help="e.g. 90m, 24h, 2d, seconds, or off")
    show = actions.add_parser("show", help="show settings, defaults filled in",
                              description="show settings, defaults filled in")
    show.add_argument("--workspace", required=True, metavar="WS", help="the workspace_id")
    show.add_argument("--format", choices=("table", "json"), default="table",
                      help="table (default) or json (the settings object)")


def _close_arguments(close: argparse.ArgumentParser) -> None:
    close.add_argument("--workspace", metavar="WS",
                       help="only this workspace (default: every workspace)")
    close.add_argument("--now", metavar="TIMESTAMP",
                       help="RFC 3339 with offset (default: the wall clock)")


def _usage(message: str) -> int:
    print(f"bonychat: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _patch(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags give, parsed (SettingsError names a bad value)."""
    patch: dict[str, Any] = {}
    if args.timezone is not None:
        patch["timezone"] = args.timezone
    if args.business_hours is not None:
        hours = parse_business_hours(args.business_hours)
        patch["business_hours"] = None if hours is None else [h.model_dump() for h in hours]
    if args.auto_close_after is not None:
        patch["inactivity_timeout_seconds"] = parse_duration(args.auto_close_after)
    return patch


def workspace(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "set":
        try:
            patch = _patch(args)
        except SettingsError as exc:
            return _usage(str(exc))
        if not patch:
            return _usage("workspace set: give --timezone, --business-hours or "
                          "--auto-close-after")
        with cli_stores(settings) as stores:
            try:
                current = change_settings(stores.events, args.workspace, patch,
                                          SettingsChange("cli"))
            except SettingsError as exc:
                return _usage(str(exc))
        print(to_json(current.settings.model_dump(mode="json")))
        return EXIT_OK
    with cli_stores(settings) as stores:
        current = load_workspace(stores.events, args.workspace)
    values = current.settings.model_dump(mode="json")
    if args.format == "json":
        print(to_json(values))
        return EXIT_OK
    print(table(["SETTING", "VALUE"], [
        ["timezone", values["timezone"]],
        ["business_hours", format_business_hours(current.settings.business_hours)],
        ["auto_close_after", format_duration(values["inactivity_timeout_seconds"])]]))
    return EXIT_OK


def _moment(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise SettingsError(f"--now: {text!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise SettingsError(f"--now: {text!r} has no offset (e.g. 2026-11-24T10:00:00Z)")
    return moment.astimezone(UTC)


def close_inactive(args: argparse.Namespace, settings: Settings) -> int:
    from services.composition import embedded_pipeline

    try:
        now = _moment(args.now)
    except SettingsError as exc:
        return _usage(str(exc))
    with cli_stores(settings) as stores:
        pipeline = embedded_pipeline(stores, settings)
        pipeline.catch_up()  # candidates come from the read model: bring it up to date

        def process(commands: list[ExpireInactive]) -> int:
            return pipeline.process_items(list(commands), source="sweep").expired

        closed = sweep(stores.events, stores.read_models, now, process,
                       workspace_id=args.workspace)
    print(to_json({"closed": closed}))
    return EXIT_OK


COMMANDS: tuple[Command, ...] = (
    Command("workspace", "workspace settings: time zone, business hours, auto-close",
            _workspace_arguments, workspace),
    Command("close-inactive", "close conversations inactive past their workspace's timeout",
            _close_arguments, close_inactive),
)
