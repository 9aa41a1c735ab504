"""Session fixtures of the contract acceptance suite (tests/e2e/test_contract_*.py).

One ``bonychat import -`` of every story into one SQLite file, then one
``bonychat serve`` on that file: tests read their story's workspace over HTTP
(cheap) and run the CLI only where the CLI itself is what they check.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .contract_client import Server, run
from .contract_scenarios import Story, all_stories

HTTP_WORKSPACES = ["h-post", "h-other"]


def gateway_token(ws: str) -> str:
    return f"gw-{ws}"


def analytics_token(ws: str) -> str:
    return f"an-{ws}"


def admin_token(ws: str) -> str:
    return f"ad-{ws}"


SETTINGS_WORKSPACES = ["s-put"]  # besides the stories with settings


@dataclass
class Contract:
    db: Path | str  # an SQLite file, or a PostgreSQL URL (tests/integration)
    stories: list[Story]
    lines: str
    import_result: Any
    server: Server

    def metrics(self, ws: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        return self.server.get_json(f"/v1/workspaces/{ws}/metrics?{query}",
                                    analytics_token(ws))

    def conversations(self, ws: str, **params: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode(params)
        rows: list[dict[str, Any]] = self.server.get_json(
            f"/v1/workspaces/{ws}/conversations?{query}", analytics_token(ws))
        return rows


@pytest.fixture(scope="session")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Contract]:
    folder = tmp_path_factory.mktemp("contract")
    yield from start_contract(folder / "contract.db", folder)


def start_contract(db: Path | str, folder: Path) -> Iterator[Contract]:
    """Serve ``db`` over HTTP, PUT the stories' workspace settings, then import every
    story with ``bonychat import -`` (beside the running server, as users do)."""
    stories = all_stories()
    lines = "".join(line + "\n" for story in stories for line in story.lines)
    workspaces = sorted({s.ws for s in stories} | set(HTTP_WORKSPACES))
    admins = sorted({s.ws for s in stories if s.settings} | set(SETTINGS_WORKSPACES))
    server = Server(db, folder / "serve.log",
                    gateway_tokens=",".join(f"{ws}={gateway_token(ws)}"
                                            for ws in HTTP_WORKSPACES),
                    analytics_tokens=",".join(f"{ws}={analytics_token(ws)}"
                                              for ws in [*workspaces, *SETTINGS_WORKSPACES]),
                    admin_tokens=",".join(f"{ws}={admin_token(ws)}" for ws in admins))
    try:
        server.wait_ready()
        for story in stories:
            if story.settings:
                reply = server.request("PUT", f"/v1/workspaces/{story.ws}/settings",
                                       admin_token(story.ws), story.settings)
                assert reply.status == 200, (story.ws, reply.status, reply.body)
        imported = run(["import", "-"], db=db, stdin=lines)
        yield Contract(db, stories, lines, imported, server)
    finally:
        server.stop()
