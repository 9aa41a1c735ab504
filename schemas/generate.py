"""Generate the JSON Schema files in ``schemas/json/`` from the pydantic models,
and the AsyncAPI document of the topics (``schemas/asyncapi.v1.json``) from them.

    python -m schemas.generate          # rewrite the files
    python -m schemas.generate --check  # exit 1 if any file is stale (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.commands import Command
from schemas.envelope import GatewayEnvelope
from schemas.events import AnyDomainEvent

OUT = Path(__file__).with_name("json")
ASYNCAPI = Path(__file__).with_name("asyncapi.v1.json")


def documents() -> dict[str, dict[str, Any]]:
    """File name -> schema document, for every public message type."""
    envelope = GatewayEnvelope.model_json_schema()
    envelope["$id"] = "https://bonychat.example/schemas/gateway-envelope.v1.json"
    envelope["description"] = (
        "Gateway event envelope v1 (CONTRACT section 1). Per-type rules (actor types, "
        "channel and data requirements) are enforced by schemas/envelope.py.")
    events: dict[str, Any] = TypeAdapter(AnyDomainEvent).json_schema()
    events["$id"] = "https://bonychat.example/schemas/conversation-events.v1.json"
    events["title"] = "ConversationEvent"
    events["description"] = (
        "Domain events published on bonychat.conversation.events.v1 (key "
        "workspace_id:contact_id); event_id is stable and unique.")
    commands: dict[str, Any] = TypeAdapter(Command).json_schema()
    commands["$id"] = "https://bonychat.example/schemas/conversation-commands.v1.json"
    commands["title"] = "ContactCommand"
    commands["description"] = "Internal commands on bonychat.conversation.commands.v1."
    return {
        "gateway-envelope.v1.json": envelope,
        "conversation-events.v1.json": events,
        "conversation-commands.v1.json": commands,
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def outputs() -> dict[Path, dict[str, Any]]:
    """Every generated file and its document."""
    from schemas.asyncapi import document as asyncapi_document

    files = {OUT / name: document for name, document in documents().items()}
    files[ASYNCAPI] = asyncapi_document()
    return files


def stale() -> list[str]:
    """Paths (under ``schemas/``) of files that differ from what the models generate now."""
    names = []
    for path, document in outputs().items():
        if not path.exists() or path.read_text(encoding="utf-8") != render(document):
            names.append(str(path.relative_to(OUT.parent)))
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if files are stale")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"schemas/{name} is stale: run `make schemas`", file=sys.stderr)
        return 1 if names else 0
    OUT.mkdir(exist_ok=True)
    for path, document in outputs().items():
        path.write_text(render(document), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
