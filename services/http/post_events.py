"""``POST /v1/events``: a gateway posts one envelope or a JSON array of them.

Each item is validated like a line of ``bonychat import``; valid items become
commands, invalid ones carry their reason. All of them go to the sink in order
(invalid ones end up in the dead-letter store), unless an item names another
workspace than the token's: then the whole request is refused with 403.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler

from schemas.commands import CommandBase
from services.http import limits
from services.http.context import CONTEXT, WORKSPACE
from services.http.errors import ApiError, json_response
from services.http.limits import MAX_BATCH_ITEMS, MAX_BODY_BYTES
from services.http.ports import SinkUnavailableError
from services.ingest.domain.normalise import Invalid, parse_object

RETRY_AFTER_SECONDS: Final = "5"
_BLANK: Final = " \t\n\r"

Parsed = CommandBase | Invalid


async def read_body(request: web.Request) -> bytes:
    """The request body, refusing (413) anything over :data:`MAX_BODY_BYTES`.

    A body that takes longer than ``limits.BODY_TIMEOUT_SECONDS`` to arrive is 408.

    A declared ``Content-Length`` is checked before reading; aiohttp enforces the
    same limit (the app's ``client_max_size``) while reading chunked bodies.
    """
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise ApiError(413, f"request body of {declared} bytes exceeds the limit of "
                            f"{MAX_BODY_BYTES} bytes (1 MiB); send smaller batches")
    seconds = limits.BODY_TIMEOUT_SECONDS
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"request body exceeds the limit of {MAX_BODY_BYTES} bytes "
                            "(1 MiB); send smaller batches") from None
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {seconds:g} s",
                       headers={"Connection": "close"}) from None


async def expect_continue(request: web.Request) -> None:
    """``Expect: 100-continue``: no go-ahead for a body declared over the limit.

    Without the interim "100 Continue" the client waits, and the handler answers
    413 (after authentication) before a byte of the oversized body is uploaded.
    """
    declared = request.content_length
    if declared is None or declared <= MAX_BODY_BYTES:
        await _default_expect_handler(request)


def array_item_texts(text: str) -> list[str]:
    """The exact source text of each element of a JSON array (already known valid)."""
    decoder = json.JSONDecoder()
    pos = _skip_blank(text, _skip_blank(text, 0) + 1)  # past "["
    texts: list[str] = []
    while text[pos] != "]":
        _, end = decoder.raw_decode(text, pos)
        texts.append(text[pos:end])
        pos = _skip_blank(text, end)
        if text[pos] == ",":
            pos = _skip_blank(text, pos + 1)
    return texts


def _skip_blank(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _BLANK:
        pos += 1
    return pos


def split_items(body: bytes) -> list[tuple[Any, str]]:
    """Decode the body into ``(value, raw text)`` per item; 400 when it is not usable.

    A leading UTF-8 byte order mark is skipped, as ``bonychat import`` skips one at the
    start of a file: RFC 8259 lets a parser ignore it, and editors add it.
    """
    body = body.removeprefix(b"\xef\xbb\xbf")
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    text = body.decode("utf-8")
    if isinstance(decoded, dict):
        return [(decoded, text.strip())]
    if not isinstance(decoded, list):
        raise ApiError(400, "the body must be one envelope (a JSON object) or a JSON "
                            f"array of envelopes, got {type(decoded).__name__}")
    if not decoded:
        raise ApiError(400, "the array is empty: send at least one envelope")
    if len(decoded) > MAX_BATCH_ITEMS:
        raise ApiError(413, f"the array has {len(decoded)} items, more than the limit of "
                            f"{MAX_BATCH_ITEMS}; send smaller batches")
    try:
        texts = array_item_texts(text)
    except (ValueError, IndexError, RecursionError):
        texts = []
    if len(texts) != len(decoded):  # cannot happen for valid JSON; keep the data anyway
        texts = [orjson.dumps(item).decode() for item in decoded]
    return list(zip(decoded, texts, strict=True))


def parse_body(body: bytes) -> list[Parsed]:
    """Every item of the body as a command or an :class:`Invalid`, in order."""
    return [parse_object(value, text) for value, text in split_items(body)]


def check_workspace(items: list[Parsed], workspace: str) -> None:
    """403 when an item names a workspace the token is not bound to."""
    for index, item in enumerate(items):
        if item.workspace_id is not None and item.workspace_id != workspace:
            raise ApiError(403, f"item {index} is for workspace {item.workspace_id!r} but "
                                f"this token is bound to {workspace!r}; nothing was accepted")


def item_status(index: int, item: Parsed) -> dict[str, Any]:
    if isinstance(item, Invalid):
        return {"index": index, "event_id": item.event_id, "status": "invalid",
                "reason": item.reason}
    return {"index": index, "event_id": item.event_id, "status": "accepted"}


async def post_events(request: web.Request) -> web.Response:
    """Validate, authorise and hand over a batch; 202 with one status per item."""
    context = request.app[CONTEXT]
    body = await read_body(request)
    items = await asyncio.to_thread(parse_body, body)
    check_workspace(items, request[WORKSPACE])
    try:
        await context.sink.submit(items)
    except SinkUnavailableError as exc:
        raise ApiError(503, f"events could not be handed over, retry later: {exc}",
                       headers={"Retry-After": RETRY_AFTER_SECONDS}) from None
    invalid = sum(isinstance(item, Invalid) for item in items)
    context.ingested_items.labels("accepted").inc(len(items) - invalid)
    context.ingested_items.labels("invalid").inc(invalid)
    return json_response({"accepted": len(items) - invalid, "invalid": invalid,
                          "items": [item_status(i, item) for i, item in enumerate(items)]},
                         status=202)
