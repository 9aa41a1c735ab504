"""The OpenAPI document names exactly the routes the app serves, and is valid 3.1."""

from __future__ import annotations

import json

from aiohttp import web
from fakes import FakeReadModelStore
from prometheus_client import CollectorRegistry
from sink_fakes import RecordingSink

from services.http.app import ROUTES, create_app
from services.http.openapi import OPERATIONS, document
from services.settings import Settings


def served_routes() -> set[tuple[str, str]]:
    """(method, path template) of every route of a built app, pages included."""
    app = create_app(settings=Settings(gateway_tokens="", analytics_tokens="",
                                       gateway_tokens_file=None, analytics_tokens_file=None),
                     sink=RecordingSink(), read_models=FakeReadModelStore(),
                     registry=CollectorRegistry())
    found = set()
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or isinstance(resource, web.StaticResource):
            continue  # HEAD mirrors GET; /static/ serves the pages' files
        assert resource is not None
        found.add((route.method, resource.canonical))
    return found


def test_every_route_is_documented_and_every_operation_exists() -> None:
    served = served_routes()
    documented = set(OPERATIONS)
    assert served - documented == set(), "routes without an operation in services/http/openapi.py"
    assert documented - served == set(), "operations in openapi.py for routes that do not exist"
    assert {(m, p) for m, p, _, _ in ROUTES} <= documented


def test_document_paths_and_methods_match_the_routes() -> None:
    doc = document()
    listed = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert listed == served_routes()


def test_document_is_openapi_3_1_with_resolvable_references() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    text = json.dumps(doc)
    for target in {part.split('"')[0] for part in text.split('"$ref": "#/')[1:]}:
        node = doc
        for key in target.split("/"):
            assert key in node, f"unresolvable $ref #/{target}"
            node = node[key]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(path.replace("}", "{").split("{")[1::2]), (method, path)
            assert op["responses"], (method, path)
            if "security" in op:  # a token route documents its 401
                assert "401" in op["responses"]


def test_protected_routes_document_their_realm() -> None:
    doc = document()
    for method, path, _, realm in ROUTES:
        op = doc["paths"][path][method.lower()]
        if realm is None:
            assert "security" not in op
        else:
            assert op["security"] == [{f"{realm}Token": []}]

