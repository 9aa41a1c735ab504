"""Every compression codec a Kafka producer may use is installed and round-trips.

Gateway teams publish with any client and any ``compression.type``; aiokafka
decompresses with cramjam (the ``aiokafka[lz4,snappy,zstd]`` extras). A batch is
built with each codec by aiokafka's own record builder and read back by the
record reader the consumer uses, so a missing or broken codec fails here, not
in production (issue 9: ``UnsupportedCodecError`` took ingest down).
"""

from __future__ import annotations

import pytest
from aiokafka import codec
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from services.runtime.kafka import PRODUCER_COMPRESSION

CODECS = {
    "gzip": (DefaultRecordBatch.CODEC_GZIP, codec.has_gzip),
    "snappy": (DefaultRecordBatch.CODEC_SNAPPY, codec.has_snappy),
    "lz4": (DefaultRecordBatch.CODEC_LZ4, codec.has_lz4),
    "zstd": (DefaultRecordBatch.CODEC_ZSTD, codec.has_zstd),
}

VALUES = [(b'{"event_id":"e-%05d","workspace_id":"ws1","contact_id":"c-%03d",'
           b'"event_type":"message_received","channel":"whatsapp"}' % (i, i % 50))
          for i in range(200)]


def _batch(codec_id: int) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec_id, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for offset, value in enumerate(VALUES):
        builder.append(offset, timestamp=None, key=b"ws1:c-%03d" % (offset % 50),
                       value=value, headers=[("source", b"gateway")])
    return bytes(builder.build())


@pytest.mark.parametrize("name", sorted(CODECS))
def test_codec_library_is_installed(name: str) -> None:
    _, available = CODECS[name]
    assert available(), f"{name} decompression is missing: install aiokafka[{name}]"


@pytest.mark.parametrize("name", sorted(CODECS))
def test_compressed_batch_round_trips(name: str) -> None:
    codec_id, _ = CODECS[name]
    data = _batch(codec_id)
    plain = _batch(DefaultRecordBatch.CODEC_NONE)
    assert len(data) < len(plain) / 2, "the batch was not compressed"

    records = MemoryRecords(data)
    batch = records.next_batch()
    assert batch is not None and batch.compression_type == codec_id
    assert batch.validate_crc()
    read = list(batch)
    assert [r.value for r in read] == VALUES
    assert [r.offset for r in read] == list(range(len(VALUES)))
    assert read[7].key == b"ws1:c-007" and read[7].headers == [("source", b"gateway")]
    assert not records.has_next()


def test_our_producers_compress_with_an_installed_codec() -> None:
    assert PRODUCER_COMPRESSION in CODECS
    assert CODECS[PRODUCER_COMPRESSION][1]()
