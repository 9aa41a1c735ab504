"""Token settings: lists, token files, constant-time comparison, no secret in errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.http import auth
from services.settings import Settings, parse_tokens, read_token_file

SECRET = "s3cr3t-token-value"


def settings(**values: object) -> Settings:
    base: dict[str, object] = {"gateway_tokens": "", "analytics_tokens": "",
                               "gateway_tokens_file": None, "analytics_tokens_file": None,
                               "admin_tokens_file": None}
    return Settings(**{**base, **values})  # type: ignore[arg-type]


def test_token_list_maps_tokens_to_workspaces() -> None:
    assert parse_tokens(" ws1=a , ws2=b,,") == {"a": "ws1", "b": "ws2"}


def test_malformed_entry_is_named_by_position_never_by_its_text() -> None:
    with pytest.raises(ValueError, match="token entry 2 is not") as info:
        parse_tokens(f"ws1=a,{SECRET}")
    assert SECRET not in str(info.value)
    with pytest.raises(ValidationError) as caught:
        settings(gateway_tokens=f"ws1=a,{SECRET}")
    assert SECRET not in str(caught.value.errors()[0]["msg"])


def test_token_file_one_entry_per_line_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "gateway-tokens"
    path.write_text("# gateway tokens\n\nws1=gw-one\n  ws2=gw-two  \nws3=a,ws4=b\n")
    assert read_token_file(str(path)) == "ws1=gw-one,ws2=gw-two,ws3=a,ws4=b"
    both = settings(gateway_tokens="ws9=env-token", gateway_tokens_file=str(path))
    assert both.tokens("gateway") == {"env-token": "ws9", "gw-one": "ws1", "gw-two": "ws2",
                                      "a": "ws3", "b": "ws4"}
    assert both.tokens("analytics") == {}


@pytest.mark.parametrize("realm", ["gateway", "analytics", "admin"])
def test_every_realm_reads_its_token_file(tmp_path: Path, realm: str) -> None:
    path = tmp_path / f"{realm}-tokens"
    path.write_text(f"ws1={realm}-secret\n")
    loaded = settings(**{f"{realm}_tokens_file": str(path)})
    assert loaded.tokens(realm) == {f"{realm}-secret": "ws1"}
    others = {"gateway", "analytics", "admin"} - {realm}
    assert all(loaded.tokens(other) == {} for other in others)


def test_token_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "analytics"
    path.write_text("ws2=an-file\n")
    monkeypatch.setenv("BONYCHAT_ANALYTICS_TOKENS_FILE", str(path))
    assert Settings().tokens("analytics") == {"an-file": "ws2"}


def test_missing_or_malformed_token_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read token file"):
        settings(gateway_tokens_file=str(tmp_path / "absent"))
    bad = tmp_path / "bad"
    bad.write_text(f"ws1=ok\n{SECRET}\n")
    with pytest.raises(ValidationError, match="token entry 2") as caught:
        settings(analytics_tokens_file=str(bad))
    assert SECRET not in str(caught.value.errors()[0]["msg"])


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every known token goes through hmac.compare_digest, even after a match."""
    seen: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return a == b

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    known = {"tok-a": "ws1", "tok-b": "ws2", "tok-c": "ws3"}
    assert auth.workspace_of("tok-a", known) == "ws1"
    assert [a for a, _ in seen] == [b"tok-a", b"tok-b", b"tok-c"]
    assert all(b == b"tok-a" for _, b in seen)
    seen.clear()
    assert auth.workspace_of("nope", known) is None
    assert len(seen) == 3
