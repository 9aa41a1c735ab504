"""``bonychat serve`` with worker processes on real Kafka + PostgreSQL.

The default ``serve`` (ingest, conversation, projections) on a machine with two
or more CPUs runs one worker process per service under the serve process. These
tests drive it as a user would: a backlog, ``/metrics`` and ``/healthz`` of the
one API port, SIGTERM, ``kill -9`` of a worker and of the parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka_fixtures import (
    BONYCHAT,
    GATEWAY_INPUT,
    WORKSPACES,
    ServeProcess,
    World,
    embedded_snapshot,
    generate_stream,
    read_topic,
    snapshot,
    wait_until,
)

from services.runtime.workers import available_cpus

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(available_cpus() < 2, reason="workers need two CPUs")]
SETTLE = 90
#: the default serve's workers (no ingest when the conversation service reads the gateway topic)
DEFAULT = ("conversation", "projections") if GATEWAY_INPUT else (
    "conversation", "ingest", "projections")


def workers(parent: int) -> dict[str, int]:
    """``--services`` value -> pid of each live child process of ``parent``."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = command_line(entry)
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z" and b"--services" in args:
            found[args[args.index(b"--services") + 1].decode()] = int(entry.name)
    return found


def command_line(entry: Path) -> list[bytes]:
    """The arguments of process ``entry`` (``/proc/PID``): NUL-separated when exec'd, one
    title with spaces when forked (``setproctitle``, services/runtime/worker_fork.py)."""
    return (entry / "cmdline").read_bytes().replace(b"\0", b" ").split()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def healthz(port: int) -> dict[str, Any]:
    status, body = get(port, "/healthz")
    info: dict[str, Any] = json.loads(body)
    assert (status == 200) == info["ready"]
    return info


def batches(port: int) -> dict[str, float]:
    """``bonychat_batch_size_count`` per service label of ``/metrics``."""
    _, text = get(port, "/metrics")
    return {m[1]: float(m[2]) for m in re.finditer(
        r'^bonychat_batch_size_count\{service="([^"]*)"\} (\S+)$', text, re.M)}


def converge(world: World, expected: dict[str, Any]) -> None:
    with world.opened() as stores:
        wait_until(lambda: snapshot(stores.read_models, WORKSPACES) == expected, SETTLE,
                   "the read model to equal the embedded import", 0.25)


def started(world: World) -> tuple[ServeProcess, int, dict[str, int]]:
    process = world.serve(name="serve")
    port = process.port()
    def every() -> dict[str, int] | None:
        found = workers(process.popen.pid)
        return found if len(found) == len(DEFAULT) else None

    found = wait_until(every, SETTLE, f"{len(DEFAULT)} worker processes")
    wait_until(lambda: healthz(port)["ready"], SETTLE, "/healthz ready")
    return process, port, found


def test_backlog_metrics_sigterm_and_restart_without_duplicates(world: World) -> None:
    stream = generate_stream(1_500, seed=31)
    first, second = stream.records[:900], stream.records[900:]
    world.publish(first)
    process, port, pids = started(world)
    assert sorted(pids) == list(DEFAULT)
    info = healthz(port)
    assert {k: v for k, v in info["components"].items() if k.startswith("worker:")} == {
        f"worker:{name}": True for name in DEFAULT}
    # a worker's listener is plain asyncio: it never loads aiohttp (issue 13, start-up)
    assert [pid for pid in pids.values()
            if "aiohttp" in Path(f"/proc/{pid}/maps").read_text()] == []
    converge(world, embedded_snapshot([v for _, v in first], WORKSPACES))
    # one API port: every worker's counters, as if one process ran every service
    def every_service() -> dict[str, float] | None:
        found = batches(port)
        return found if set(DEFAULT) <= set(found) else None

    counts = wait_until(every_service, SETTLE, "batches of every service in /metrics")
    assert all(counts[s] >= 1 for s in DEFAULT)
    _, text = get(port, "/metrics")
    assert text.count("# TYPE bonychat_events_total counter") == 1
    invalid = re.search(r'^bonychat_events_total\{outcome="invalid",service="ingest",'
                        r'type="unknown"\} (\S+)$', text, re.M)
    assert invalid is not None
    assert float(invalid[1]) == sum(1 for _, v in first if _is_invalid(v))

    assert process.stop() == 0, process.log()[-3000:]
    assert not any(alive(pid) for pid in pids.values())  # no orphans
    log = process.log()
    assert "worker ingest stopped with status" not in log  # each stopped cleanly (0)

    again = world.serve(name="serve-2")
    again.port()
    world.publish(second)
    converge(world, embedded_snapshot(stream.lines, WORKSPACES))
    # ingest committed its offsets when it stopped: nothing was forwarded twice (with the
    # gateway input nothing is forwarded: the restart resumed from the tracked positions)
    commands = read_topic(world.bootstrap, world.topics.commands)
    assert len(commands) == (0 if GATEWAY_INPUT else len(stream.records) - stream.invalid)
    assert again.stop() == 0


def _is_invalid(value: bytes) -> bool:
    from services.ingest.domain.normalise import Invalid, parse

    return isinstance(parse(value), Invalid)


def test_a_killed_worker_is_started_again(world: World) -> None:
    stream = generate_stream(1_200, seed=32)
    process, port, pids = started(world)
    os.kill(pids["conversation"], signal.SIGKILL)
    process.wait_log(r"worker conversation exited with status -9; restarting", SETTLE)
    def replaced() -> dict[str, int] | None:
        found = workers(process.popen.pid)
        return found if found.get("conversation") not in (None, pids["conversation"]) else None

    restarted = wait_until(replaced, SETTLE, "a new conversation worker")
    assert restarted["projections"] == pids["projections"]  # the others were not touched
    wait_until(lambda: healthz(port)["ready"], SETTLE, "/healthz ready again")
    world.publish(stream.records)
    converge(world, embedded_snapshot(stream.lines, WORKSPACES))
    assert process.stop() == 0


def test_workers_end_with_a_killed_parent(world: World) -> None:
    process, _, pids = started(world)
    process.kill9()
    deadline = time.monotonic() + SETTLE
    while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [name for name, pid in pids.items() if alive(pid)] == []


def local_ports(pids: list[int]) -> set[int]:
    """Local TCP ports of the sockets the processes ``pids`` hold open."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_only_the_parent_probes_the_dependencies(world: World) -> None:
    """One dependency watch per serve, not one per process (its PostgreSQL connection)."""
    process, port, pids = started(world)
    time.sleep(3)  # a few probe rounds (BONYCHAT_HEALTH_PROBE_SECONDS, 1 s)
    mine = local_ports([process.popen.pid, *pids.values()])
    with psycopg.connect(world.database_url, autocommit=True) as conn:
        probes = [row[0] for row in conn.execute(
            "SELECT client_port FROM pg_stat_activity WHERE application_name = 'bonychat-health'")]
    assert len([p for p in probes if p in mine]) == 1  # before: 4 (the parent and each worker)
    assert healthz(port)["dependencies"] == {"kafka": True, "postgresql": True}
    assert process.stop() == 0


def test_the_first_workers_are_forked_and_exec_d_when_asked(world: World) -> None:
    """Forked from the serve once its code is loaded (one title, spaces: setproctitle), or
    each its own ``bonychat serve --services X`` (NUL-separated arguments) when asked."""
    for start, forked in (("fork", True), ("exec", False)):
        process = world.serve(name=f"serve-{start}", BONYCHAT_SERVE_WORKER_START=start)
        port = process.port()
        pids = wait_until(lambda p=process: workers(p.popen.pid) or None, SETTLE, "workers")
        wait_until(lambda p=port: healthz(p)["ready"], SETTLE, "/healthz ready")
        raw = {name: Path(f"/proc/{pid}/cmdline").read_bytes() for name, pid in pids.items()}
        assert sorted(raw) == list(DEFAULT)
        assert all((b"\0--services\0" not in line) == forked for line in raw.values()), raw
        assert process.stop() == 0
        assert not any(alive(pid) for pid in pids.values())


def test_one_process_when_asked(world: World) -> None:
    process = world.serve(name="single", BONYCHAT_SERVE_PROCESSES="1")
    process.port()
    time.sleep(1)
    assert workers(process.popen.pid) == {}
    assert process.stop() == 0


def workers_of(parent: int) -> list[int]:
    """Live worker processes started by ``parent``, even once it is gone (reparented)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            args = command_line(entry) if entry.name.isdigit() else []
        except OSError:
            continue
        if b"--worker-of" in args and args[args.index(b"--worker-of") + 1:][:1] == [
                str(parent).encode()]:
            found.append(int(entry.name))
    return [pid for pid in found if alive(pid)]


def test_ctrl_c_stops_every_worker_once(world: World) -> None:
    """SIGINT to the whole process group (a terminal's Ctrl-C): workers leave it to the parent."""
    with tempfile.TemporaryFile() as log:
        popen = subprocess.Popen([str(BONYCHAT), "serve"], env=world.env(), stderr=log,
                                 stdout=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_until(lambda: len(workers(popen.pid)) == len(DEFAULT), SETTLE, "the workers")
            pids = list(workers(popen.pid).values())
            time.sleep(1)
            os.killpg(popen.pid, signal.SIGINT)
            assert popen.wait(60) == 0
        finally:
            if popen.poll() is None:
                popen.kill()
        log.seek(0)
        text = log.read().decode(errors="replace")
    assert not any(alive(pid) for pid in pids)
    assert "restarting" not in text and "did not stop in time" not in text, text[-3000:]


def test_a_serve_that_cannot_take_its_port_leaves_no_workers(world: World) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = world.serve(name="busy-port", BONYCHAT_HTTP_PORT=str(port))
        assert process.popen.wait(60) == 1
    assert "cannot listen on" in process.log()
    assert workers_of(process.popen.pid) == []


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_only_the_followers_worker_yields_the_cpu(world: World) -> None:
    """The projections' worker runs at BONYCHAT_FOLLOWER_NICENESS (default 10) above the
    serve; the conversation worker and the parent keep the serve's priority."""
    process, _, pids = started(world)
    base = niceness(process.popen.pid)
    assert niceness(pids["conversation"]) == base
    assert niceness(pids["projections"]) == min(base + 10, 19)
    assert process.stop() == 0
