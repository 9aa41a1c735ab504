"""A worker's listener (``/metrics``, ``/healthz`` on 127.0.0.1) in plain asyncio, asked
the way the parent asks it (aiohttp's client: the probe, the metrics merge)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.worker_listener import WorkerListener


async def get(session: aiohttp.ClientSession, port: int, path: str,
              method: str = "GET") -> tuple[int, str, bytes]:
    async with session.request(method, f"http://127.0.0.1:{port}{path}") as reply:
        return reply.status, reply.headers.get("Content-Type", ""), await reply.read()


def test_healthz_and_metrics_answer_as_the_parent_reads_them() -> None:
    async def scenario() -> None:
        health, metrics = Health(), RuntimeMetrics()
        health.expect("conversation")
        metrics.events.labels("conversation", "x", "accepted").inc(7)
        listener = WorkerListener(metrics, health)
        port = await listener.start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as reply:
                    assert reply.status == 503
                    info = await reply.json()  # the parent's probe: JSON content type
                assert info["ready"] is False and info["components"] == {"conversation": False}
                health.set_ready("conversation")
                status, _, _ = await get(session, port, "/healthz")
                assert status == 200
                status, kind, body = await get(session, port, "/metrics")
                assert status == 200 and kind.startswith("text/plain")
                samples = {(s.name, s.labels.get("outcome")): s.value
                           for f in text_string_to_metric_families(body.decode())
                           for s in f.samples}
                assert samples[("bonychat_events_total", "accepted")] == 7
                assert (await get(session, port, "/metrics?x=1"))[0] == 200
                status, _, body = await get(session, port, "/nope")
                assert status == 404 and b"not_found" in body
                assert (await get(session, port, "/metrics", "POST"))[0] == 405
        finally:
            await listener.cleanup()
        assert listener.server is None

    asyncio.run(scenario())


def test_a_client_that_sends_no_request_gets_nothing_and_others_still_get_answers() -> None:
    async def scenario() -> None:
        health = Health()
        health.set_ready("x")
        listener = WorkerListener(RuntimeMetrics(), health)
        port = await listener.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"not http\r\n\r\n")
            await writer.drain()
            assert await reader.read() == b""  # closed without an answer
            writer.close()
            async with aiohttp.ClientSession() as session:
                assert (await get(session, port, "/healthz"))[0] == 200
        finally:
            await listener.cleanup()

    asyncio.run(scenario())


def test_a_launched_worker_loads_no_aiohttp() -> None:
    """What a worker loads before its go (serve.PRELOAD) and after it (its stores, its
    services, this listener) leaves aiohttp out: ~0.1 s of each worker's start (issue 13)."""
    code = ("import importlib, sys\n"
            "import services.cli.main, services.runtime.serve as s, services.runtime.worker_side\n"
            "for m in s.PRELOAD: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
