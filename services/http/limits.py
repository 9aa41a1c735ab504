"""Limits of the HTTP surface, each answered with a documented status (docs/http.md).

| limit | value | answer |
| --- | --- | --- |
| request body | 1 MiB | 413 ``payload_too_large`` |
| items in one ``POST /v1/events`` array | 5,000 | 413 ``payload_too_large`` |
| JSON nesting depth | 1,024 (orjson's parser) | 400 ``bad_request`` |
| request line / one header line | 8,190 bytes | 400 (aiohttp's plain-text answer) |
| header count | 128 | 400 (aiohttp's plain-text answer) |
| body upload time | 30 s from the first byte read | 408 ``request_timeout`` |
| request head, idle keep-alive | 20 s after connecting or the last answer | connection closed |
"""

from __future__ import annotations

from typing import Any, Final

from services.ingest.domain.normalise import MAX_INPUT_BYTES

#: the one input limit of the service: also a JSONL line's and a Kafka record's
MAX_BODY_BYTES: Final = MAX_INPUT_BYTES
MAX_BATCH_ITEMS: Final = 5_000
MAX_JSON_DEPTH: Final = 1024
BODY_TIMEOUT_SECONDS: Final = 30.0
#: keyword arguments for ``web.AppRunner`` (passed on to aiohttp's request handler)
SERVER_OPTIONS: Final[dict[str, Any]] = {
    "keepalive_timeout": 20.0, "max_line_size": 8190, "max_field_size": 8190,
    "max_headers": 128,
}
