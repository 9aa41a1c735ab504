"""Bearer-token authentication: each token is bound to one workspace (CONTRACT §5).

Gateway tokens may only post events, analytics tokens may only query; a realm
with no tokens configured refuses every request, so nothing runs open by accident.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from services.http.context import WORKSPACE, Realm, route_label
from services.http.errors import ApiError


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, if there is one."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def workspace_of(token: str, tokens: Mapping[str, str]) -> str | None:
    """The workspace ``token`` is bound to; compares every token in constant time."""
    found = None
    supplied = token.encode()
    for known, workspace in tokens.items():
        if hmac.compare_digest(known.encode(), supplied):
            found = workspace
    return found


def _unauthorized(realm: Realm, detail: str, invalid: bool) -> ApiError:
    challenge = f'Bearer realm="bonychat-{realm}"'
    if invalid:
        challenge += ', error="invalid_token"'
    return ApiError(401, detail, headers={"WWW-Authenticate": challenge})


def authenticate(request: web.Request, realm: Realm, tokens: Mapping[str, str]) -> str:
    """The workspace of the request's token in ``realm``, or raise 401."""
    if not tokens:
        raise _unauthorized(realm, f"no {realm} tokens are configured on this server "
                                   f"(BONYCHAT_{realm.upper()}_TOKENS)", invalid=False)
    token = bearer_token(request)
    if token is None:
        raise _unauthorized(realm, "missing 'Authorization: Bearer TOKEN' header",
                            invalid=False)
    workspace = workspace_of(token, tokens)
    if workspace is None:
        raise _unauthorized(realm, f"unknown {realm} token", invalid=True)
    return workspace


#: tokens of these realms are accepted too where a route asks for the key's realm
ALSO_ACCEPTED: dict[tuple[str, Realm], tuple[Realm, ...]] = {
    ("/v1/workspaces/{ws}/settings", "analytics"): ("admin",)}


def _workspace(request: web.Request, realm: Realm, label: str,
               tokens: Mapping[Realm, Mapping[str, str]]) -> str:
    """The token's workspace in ``realm`` (or a realm also accepted there), or 401/403.

    An admin route answers 403 to a valid token of another realm (not an admin).
    """
    token = bearer_token(request)
    for other in ALSO_ACCEPTED.get((label, realm), ()):
        found = workspace_of(token, tokens.get(other, {})) if token else None
        if found is not None:
            return found
    if realm == "admin" and token is not None and any(
            workspace_of(token, table) is not None
            for name, table in tokens.items() if name != "admin"):
        raise ApiError(403, "this route needs an admin token (BONYCHAT_ADMIN_TOKENS)")
    return authenticate(request, realm, tokens.get(realm, {}))


def auth_middleware(tokens: Mapping[Realm, Mapping[str, str]],
                    realms: Mapping[tuple[str, str], Realm]) -> Middleware:
    """Authenticate routes listed in ``realms`` (route template -> realm).

    The token's workspace is stored under :data:`WORKSPACE`. A route with a
    ``{ws}`` segment answers 403 when it names another workspace than the token's.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        label = route_label(request)
        method = "GET" if request.method == "HEAD" else request.method
        realm = realms.get((method, label))
        if realm is None:
            return await handler(request)
        workspace = _workspace(request, realm, label, tokens)
        wanted = request.match_info.get("ws")
        if wanted is not None and wanted != workspace:
            raise ApiError(403, f"this token is bound to workspace {workspace!r}, "
                                f"not {wanted!r}")
        request[WORKSPACE] = workspace
        return await handler(request)

    return middleware
