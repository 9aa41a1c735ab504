"""Acceptance of the HTTP surface of CONTRACT §5 on ``bonychat serve`` (embedded
runtime, a free port, tokens in the environment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import Contract, analytics_token, gateway_token
from .contract_client import Server
from .contract_scenarios import at

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
GW = gateway_token("h-post")


def event(n: int, contact: str = "p1", ws: str = "h-post", **fields: Any) -> dict[str, Any]:
    body = {"event_id": f"http-{n}", "type": "message.received", "workspace_id": ws,
            "contact_id": contact, "occurred_at": at("09:00"), "channel": {"type": "webchat"}}
    body.update(fields)
    return body


def test_post_one_envelope_is_processed_by_the_embedded_runtime(contract: Contract) -> None:
    reply = contract.server.request("POST", "/v1/events", GW, event(1, "p1"))
    assert 200 <= reply.status < 300, reply.body
    [answer] = reply.json()["items"]
    assert (answer["event_id"], answer["status"]) == ("http-1", "accepted")
    rows = contract.server.get_json("/v1/workspaces/h-post/conversations?contact=p1",
                                    analytics_token("h-post"))
    assert [(r["contact_id"], r["channel"], r["opened_at"]) for r in rows] == [
        ("p1", "webchat", at("09:00"))]


def test_post_array_answers_which_items_are_accepted_and_which_invalid_and_why(
        contract: Contract) -> None:
    items = [event(2, "p2"), event(3, "p3", occurred_at="2026-11-24T09:00:00"), "not an object"]
    reply = contract.server.request("POST", "/v1/events", GW, items)
    assert 200 <= reply.status < 300, reply.body
    answer = reply.json()["items"]
    assert [a["status"] for a in answer] == ["accepted", "invalid", "invalid"]
    assert all(isinstance(a["reason"], str) and a["reason"] for a in answer[1:])
    contacts = [r["contact_id"] for r in contract.conversations("h-post")]
    assert "p2" in contacts and "p3" not in contacts


@pytest.mark.parametrize("body", [b"{not json", b"[{\"event_id\": ", b"", b"\xff\xfe"])
def test_malformed_json_is_400(contract: Contract, body: bytes) -> None:
    assert contract.server.request("POST", "/v1/events", GW, raw=body).status == 400


def test_post_without_a_valid_token_is_401(contract: Contract) -> None:
    server = contract.server
    assert server.request("POST", "/v1/events", None, event(4)).status == 401
    assert server.request("POST", "/v1/events", "wrong", event(4)).status == 401
    assert server.request("POST", "/v1/events", analytics_token("h-post"),
                          event(4)).status == 401
    assert server.request("POST", "/v1/events", None, raw=b"{not json").status == 401
    assert "p4" not in [r["contact_id"] for r in contract.conversations("h-post")]


def test_post_for_another_workspace_is_403(contract: Contract) -> None:
    server = contract.server
    assert server.request("POST", "/v1/events", GW, event(5, ws="h-other")).status == 403
    assert server.request("POST", "/v1/events", GW,
                          [event(6, "p6"), event(7, ws="h-other")]).status == 403
    assert "p6" not in [r["contact_id"] for r in contract.conversations("h-post")]


def test_body_over_1_mib_is_413_and_1_mib_is_not(contract: Contract) -> None:
    one = b'{"event_id": "big"}'
    exactly = one + b" " * (MIB - len(one))
    over = exactly + b" "
    assert contract.server.request("POST", "/v1/events", GW, raw=over).status == 413
    reply = contract.server.request("POST", "/v1/events", GW, raw=exactly)
    assert 200 <= reply.status < 300, reply.status
    assert [a["status"] for a in reply.json()["items"]] == ["invalid"]


def test_query_endpoints_need_the_workspace_analytics_token(contract: Contract) -> None:
    server = contract.server
    for path in ("/v1/workspaces/m-dims/metrics", "/v1/workspaces/m-dims/conversations"):
        assert server.request("GET", path, None).status == 401
        assert server.request("GET", path, "nope").status == 401
        assert server.request("GET", path, GW).status == 401
        assert server.request("GET", path, analytics_token("m-example")).status == 403
        assert server.request("GET", path, analytics_token("m-dims")).status == 200


def test_get_conversations_filters_by_contact_and_status(contract: Contract) -> None:
    rows = contract.conversations("l-open", contact="c2", status="closed")
    assert [r["opened_at"] for r in rows] == [at("10:00"), at("11:00"), at("12:00")]
    assert [r["contact_id"] for r in contract.conversations("l-open", status="open")] == [
        "c1", "c2"]
    assert contract.conversations("l-open", contact="nobody") == []


@pytest.mark.parametrize("query", ["group_by=hour", "tz=Mars/Olympus", "from=2026-13-01",
                                   "to=tomorrow"])
def test_bad_metrics_query_is_400(contract: Contract, query: str) -> None:
    reply = contract.server.request("GET", f"/v1/workspaces/m-dims/metrics?{query}",
                                    analytics_token("m-dims"))
    assert reply.status == 400, (query, reply.status)


def test_prometheus_metrics_and_healthz(contract: Contract) -> None:
    exposition = contract.server.request("GET", "/metrics")
    assert exposition.status == 200
    assert exposition.headers["Content-Type"].startswith("text/plain")
    assert b"# TYPE " in exposition.body
    assert contract.server.request("GET", "/healthz").status == 200


def test_no_gateway_tokens_configured_refuses_every_post(tmp_path: Path) -> None:
    server = Server(tmp_path / "closed.db", tmp_path / "serve.log",
                    analytics_tokens="h-post=an-h-post")
    try:
        server.wait_ready()
        for token in (None, "", "gw-h-post", "an-h-post"):
            assert server.request("POST", "/v1/events", token, event(8)).status == 401
        assert server.get_json("/v1/workspaces/h-post/conversations", "an-h-post") == []
    finally:
        server.stop()


def test_empty_query_parameters_mean_their_defaults(contract: Contract) -> None:
    token = analytics_token("m-example")
    plain = contract.server.get_json("/v1/workspaces/m-example/metrics", token)
    assert contract.server.get_json(
        "/v1/workspaces/m-example/metrics?group_by=&from=&to=&tz=", token) == plain
    assert contract.server.get_json(
        "/v1/workspaces/m-example/conversations?contact=&status=", token) == \
        contract.conversations("m-example")
