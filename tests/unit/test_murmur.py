"""The fast murmur2 gives aiokafka's (Kafka's Java client's) hash for every input."""

from __future__ import annotations

import random

from aiokafka.partitioner import murmur2 as reference
from hypothesis import given, settings
from hypothesis import strategies as st

from services.runtime.kafka import key_hash
from services.runtime.murmur import murmur2


def test_every_length_up_to_300_hashes_as_aiokafka() -> None:
    rng = random.Random(13)
    for length in range(301):  # every tail (0-3 bytes) and the >= 64-word way
        for _ in range(10):
            data = rng.randbytes(length)
            assert murmur2(data) == reference(data), data


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_hash_as_aiokafka(data: bytes) -> None:
    assert murmur2(data) == reference(data)


def test_known_keys_go_to_kafkas_partitions() -> None:
    # values of Kafka's Java Utils.murmur2 (its UtilsTest), taken & 0x7FFFFFFF as in key_hash
    assert murmur2(b"21") & 0xFFFFFFFF == (-973932308) & 0xFFFFFFFF
    assert murmur2(b"foobar") & 0xFFFFFFFF == (-790332482) & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") & 0xFFFFFFFF == (-985981536) & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-longer-string") & 0xFFFFFFFF == (-1486304829) & 0xFFFFFFFF
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") & 0xFFFFFFFF == (
        -58897971) & 0xFFFFFFFF
    assert murmur2(b"abc") & 0xFFFFFFFF == 479470107
    key = b"ws1:contact-0000042"
    assert key_hash(key) == reference(key) & 0x7FFFFFFF
