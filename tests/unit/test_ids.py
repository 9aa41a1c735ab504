"""The aggregate ids are exactly ``uuid.uuid5`` of the workspace and contact ids.

``aggregate_id`` builds the ``UUID`` from its value (the stdlib's own SHA-1, no
``UUID.__init__`` checks) and ``name_uuid`` formats the event and conversation
ids: both must give what ``uuid.uuid5`` gives for any text (they name the
stored events: a different id would be a different aggregate), and the UUID
must behave as one built by ``uuid`` does (equality, hash, text, version,
variant, safety, pickling, ordering).
"""

from __future__ import annotations

import pickle
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from services.conversation.domain.ids import NAMESPACE, aggregate_id, name_uuid

texts = st.text(max_size=80)


@settings(max_examples=400, deadline=None)
@given(texts, texts)
def test_aggregate_id_is_uuid5(workspace_id: str, contact_id: str) -> None:
    expected = uuid.uuid5(NAMESPACE, f"{workspace_id}\x1f{contact_id}")
    got = aggregate_id.__wrapped__(workspace_id, contact_id)
    assert type(got) is uuid.UUID
    assert got == expected and hash(got) == hash(expected)
    assert str(got) == str(expected) and repr(got) == repr(expected)
    assert got.bytes == expected.bytes and got.int == expected.int
    assert got.version == 5 and got.variant == uuid.RFC_4122
    assert got.is_safe is expected.is_safe is uuid.SafeUUID.unknown
    assert pickle.loads(pickle.dumps(got)) == expected
    assert not (got < expected) and not (got > expected)
    assert aggregate_id(workspace_id, contact_id) == expected  # the cached one too


@settings(max_examples=300, deadline=None)
@given(texts, texts, texts)
def test_name_uuid_under_an_aggregate_is_uuid5(workspace_id: str, contact_id: str,
                                               name: str) -> None:
    space = aggregate_id(workspace_id, contact_id)
    expected = str(uuid.uuid5(space, name))
    assert name_uuid(space, name) == expected
    assert name_uuid(space.bytes, name) == expected


def test_the_uuid_cannot_be_changed() -> None:
    """Built without ``UUID.__init__``, it is as immutable as any ``UUID``."""
    ident = aggregate_id("ws1", "c1")
    try:
        ident.int = 0  # type: ignore[misc]
    except TypeError:
        pass
    else:
        raise AssertionError("a UUID took a new value")
    assert ident == uuid.uuid5(NAMESPACE, "ws1\x1fc1")
