"""``bonychat serve`` subprocesses, their peak RSS, and who uses the CPU meanwhile."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from .embedded import DATA, bonychat

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
CHECKOUT = "BONYCHAT_BENCH_CHECKOUT"  # not a service setting: read and removed here


class ServiceDied(RuntimeError):
    """A service process exited while it should have been working."""


class ServeProcess:
    """One ``bonychat serve --services X`` with its stderr (JSON log lines) in a file;
    ``services=None``: ``bonychat serve`` with its default services, as a user runs it."""

    def __init__(self, services: str | None, env: Mapping[str, str], name: str) -> None:
        logs = DATA / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = logs / f"{name}-{os.getpid()}-{time.time_ns()}.log"
        env = dict(env)
        # an A/B variant may run another checkout's code (its own .venv): NAME@PATH in bench.ab
        checkout = env.pop(CHECKOUT, "")
        program, cwd = ((str(Path(checkout) / ".venv" / "bin" / "bonychat"), Path(checkout))
                        if checkout else (bonychat(), ROOT))
        with self.log_path.open("wb") as handle:
            self.popen = subprocess.Popen(
                [program, "serve", *(["--services", services] if services else [])], env=env,
                stdout=subprocess.DEVNULL, stderr=handle, cwd=cwd)
        self.peak_rss_mb: float | None = None
        self.worker_peak_rss_mb: dict[str, float | None] = {}  # its worker processes

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, chars: int = 3_000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check(self) -> None:
        """Raise (with the stderr tail) if the process has exited."""
        code = self.popen.poll()
        if code is not None:
            raise ServiceDied(f"service {self.name} (pid {self.pid}) exited with {code}; "
                              f"stderr tail:\n{self.tail()}")

    def port(self) -> int | None:
        found = re.search(r"listening on http://[^:]+:(\d+)", self.tail(1 << 20))
        return int(found.group(1)) if found else None

    def ready(self) -> bool:
        """Started up: the HTTP listener is up, the services start consuming now."""
        return self.port() is not None

    def worker_ready(self, pid: int) -> bool:
        """The worker process ``pid`` of this serve is started up (its listener is up)."""
        return re.search(rf'"msg": "worker listener on [^"]*", "port": \d+, "pid": {pid}\b',
                         self.tail(1 << 20)) is not None

    def healthy(self) -> bool:
        """``/healthz`` answers ready (a serve with workers: every worker is up)."""
        port = self.port()
        if port is None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def metrics(self) -> str | None:
        """Its ``/metrics`` text (None: not listening yet; OSError if it does not answer)."""
        port = self.port()
        if port is None:
            return None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    def batches(self) -> dict[str, dict[str, float]]:
        """Per ``service`` label of its ``/metrics``: batches, mean size, seconds in them."""
        text = self.metrics()
        if text is None:
            return {}
        sums: dict[str, dict[str, float]] = {}
        for kind, service, value in re.findall(
                r'^bonychat_batch_(seconds_sum|seconds_count|size_sum)\{service="([^"]*)"\} '
                r"(\S+)$", text, re.MULTILINE):
            sums.setdefault(service, {})[kind] = float(value)
        return {service: {
            "batches": int(v.get("seconds_count", 0)),
            "mean_batch_size": round(v.get("size_sum", 0) / max(v.get("seconds_count", 0), 1), 1),
            "seconds_in_batches": round(v.get("seconds_sum", 0), 2)} for service, v in sums.items()}

    def stop(self, timeout: float = 30.0) -> int:
        """Record VmHWM, SIGTERM, wait; returns the exit status (kills after ``timeout``)."""
        if self.popen.poll() is None:
            self.peak_rss_mb = vm_hwm_mb(self.pid)
            self.worker_peak_rss_mb = {name: vm_hwm_mb(pids[0]) for name, pids
                                       in _children({self.name: self.pid}).items()}
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
                return -9
        return self.popen.returncode

    def discard_log(self) -> None:
        self.log_path.unlink(missing_ok=True)


def vm_hwm_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MiB, None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def stat_ticks(stat: Path) -> int | None:
    """User + system ticks from a ``/proc/PID/stat`` (or ``.../task/TID/stat``) file;
    None when it is gone (the process or thread ended)."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime


def _cpu_ticks(pid: int) -> int:
    return stat_ticks(Path(f"/proc/{pid}/stat")) or 0


def _machine_busy() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values[:8]) - idle, sum(values[:8])


def _infra_markers() -> tuple[bytes, ...]:
    """Paths in the command line of the benchmark's own broker and PostgreSQL (other
    people's instances on this machine, e.g. a fault-injection copy, are not ours)."""
    state = Path(os.environ.get("BONYCHAT_INFRA_STATE") or ROOT / "infra" / ".state")
    return tuple(dict.fromkeys(str(p).encode() for p in (state, state.resolve())))


def _infra_pids() -> dict[str, list[int]]:
    """The broker's JVM; the postmaster and its children (every backend, ours or not).
    Falls back to every broker / every postgres process when none matches the state dir."""
    markers = _infra_markers()
    kafka: list[tuple[int, bool]] = []
    postgres: list[tuple[int, int, bool]] = []  # pid, parent, is ours
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm not in ("postgres", "java"):
                continue
            cmdline = (entry / "cmdline").read_bytes()
            ours = any(m in cmdline for m in markers)
            if comm == "postgres":
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                postgres.append((int(entry.name), parent, ours))
            elif b"kafka.Kafka" in cmdline:
                kafka.append((int(entry.name), ours))
        except (OSError, ValueError, IndexError):
            continue
    masters = {pid for pid, _, ours in postgres if ours}
    found = {"kafka": [p for p, ours in kafka if ours],
             "postgres": [p for p, parent, _ in postgres if p in masters or parent in masters]}
    for name, every in (("kafka", [p for p, _ in kafka]),
                        ("postgres", [p for p, _, _ in postgres])):
        if not found[name] and every:
            found[name] = every
            if name not in _WARNED:  # other people's instances count as the pipeline's
                _WARNED.add(name)
                print(f"procs: no {name} process under {markers[0].decode()}: counting every "
                      f"{name} process on the machine (export BONYCHAT_INFRA_STATE)",
                      file=sys.stderr, flush=True)
    return found


_WARNED: set[str] = set()


def broker_jvm_flags() -> list[str]:
    """The ``-XX:`` flags of the benchmark's broker (its JIT and collector), for the results."""
    for pid in _infra_pids()["kafka"][:1]:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return []
        return [a.decode() for a in args if a.startswith(b"-XX:")]
    return []


#: the PostgreSQL backends of the harness's own connections (the latency poller) and of
#: other people's clients (other developers' tests on a shared cluster): not pipeline
PG_HARNESS, PG_OTHERS = "postgres: bench harness", "postgres: other clients"
_BACKEND_PORT = re.compile(rb"\((\d+)\)")


def client_pids(server_port: int) -> dict[int, int]:
    """Local TCP port of each client connected to ``server_port`` -> the client's pid
    (``ss -tnp``; empty when ``ss`` is missing: every backend then counts as ours)."""
    try:
        out = subprocess.run(["ss", "-tnpH", f"dport = :{server_port}"], capture_output=True,
                             text=True, check=False, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    clients: dict[int, int] = {}
    for line in out.splitlines():
        parts = line.split()
        match = re.search(r"pid=(\d+)", line)
        if len(parts) >= 4 and match:
            clients[int(parts[3].rsplit(":", 1)[1])] = int(match.group(1))
    return clients


def split_backends(postgres: list[int], ours: set[int], harness: int,
                   server_port: int | None,
                   owners: dict[int, int] | None = None) -> dict[str, list[int]]:
    """PostgreSQL's processes by whom they serve: ``postgres`` (the background processes
    and the backends of ``ours``, the measured services, or of a client gone meanwhile),
    :data:`PG_HARNESS` (``harness``'s own backends) and :data:`PG_OTHERS` (everyone
    else's: on a shared cluster, other people's work). Without ``server_port`` all of
    them are ``postgres``. ``owners`` (if given) gets backend pid -> client pid of the
    ``postgres`` group's backends."""
    if server_port is None:
        return {"postgres": postgres}
    clients = client_pids(server_port)
    groups: dict[str, list[int]] = {"postgres": [], PG_HARNESS: [], PG_OTHERS: []}
    for pid in postgres:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        match = _BACKEND_PORT.search(cmdline)
        client = clients.get(int(match.group(1))) if match else None
        if client is None or client in ours:
            groups["postgres"].append(pid)
            if owners is not None and client is not None:
                owners[pid] = client
        elif client == harness:
            groups[PG_HARNESS].append(pid)
        else:
            groups[PG_OTHERS].append(pid)
    return groups


def _database_port() -> int | None:
    """The TCP port of ``BONYCHAT_DATABASE_URL`` (None: not set, or a Unix socket)."""
    url = os.environ.get("BONYCHAT_DATABASE_URL")
    if not url:
        return None
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    host = str(params.get("host") or "")
    if not host or host.startswith("/"):
        return None
    return int(params.get("port") or 5432)


SERVICES = ("ingest", "conversation", "relay", "projections")


def is_service(name: str) -> bool:
    """A ``bonychat serve`` process of the measurement (``conversation-2``, a whole
    ``serve`` and its workers ``serve:ingest``... included)."""
    return name.split("-", maxsplit=1)[0] in SERVICES or name.split(":", maxsplit=1)[0] == "serve"


def _children(parents: Mapping[str, int]) -> dict[str, list[int]]:
    """``NAME:SERVICES`` -> pid of each child process of the named pids (a serve's
    workers, named by their ``--services``)."""
    wanted = {pid: name for name, pid in parents.items()}
    found: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent not in wanted:
                continue
            # NUL-separated when exec'd, one title with spaces when forked (setproctitle)
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").split()
        except (OSError, ValueError, IndexError):
            continue
        label = (args[args.index(b"--services") + 1].decode() if b"--services" in args
                 else entry.name)
        found.setdefault(f"{wanted[parent]}:{label}", []).append(int(entry.name))
    return found


#: how long after its services are ready a serve without worker processes is taken
#: to have none (:meth:`CpuSampler._watch_workers`)
WORKERLESS_S = 10.0


class CpuSampler:
    """Samples, once a second, the cores used by each service, Kafka, PostgreSQL (its
    background processes and the services' backends; the harness's and other clients'
    backends apart: :func:`split_backends`), this harness, and everything else.

    ``ready`` (service name -> probe) excludes each service's start-up (imports,
    connecting) from its CPU: a watcher checks the probes every 20 ms and takes that
    process's CPU at the first true answer as its zero (and off the machine's).
    ``worker_ready``: each service's child processes are sampled too, as
    ``NAME:SERVICES`` (a ``serve`` that runs its services as worker processes), each
    from the first true answer of ``worker_ready(pid)``."""

    def __init__(self, services: Mapping[str, int], interval: float = 1.0,
                 ready: Mapping[str, Callable[[], bool]] | None = None,
                 worker_ready: Callable[[int], bool] | None = None) -> None:
        self.services = dict(services)
        self.worker_ready = worker_ready
        self.workers = worker_ready is not None
        #: the watcher still looks for workers that have not answered ready (it reads
        #: every process in /proc: left on for a whole run, every 20 ms, it cost this
        #: harness ~0.27 cores beside the serve it measured)
        self._watching_workers = self.workers
        self._parents_ready_at: float | None = None
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        #: PostgreSQL's TCP port: its backends are split by client (:func:`split_backends`)
        self.pg_port = _database_port()
        #: a backend of ``postgres`` -> the service it serves; ticks per such client
        self._pg_owner: dict[int, str] = {}
        self._pg_used: dict[str, int] = {}
        self.ready = dict(ready or {})
        self.startup_ticks: dict[str, int] = {}
        self._first: tuple[dict[str, dict[int, int]], int, int] = ({}, 0, 0)
        self._prev = self._first
        self._used: dict[str, int] = {}  # ticks per group so far
        self._busy = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._watcher = threading.Thread(target=self._watch_ready, daemon=True)

    def _watch_ready(self) -> None:
        while (self.ready or self._watching_workers) and not self._stop.wait(0.02):
            for name, probe in list(self.ready.items()):
                if probe():
                    pid = self.services[name]
                    self.startup_ticks[name] = _cpu_ticks(pid) - self._first[0][name][pid]
                    del self.ready[name]
            if self._watching_workers and self.worker_ready is not None:
                self._watching_workers = not self._watch_workers(self.worker_ready)

    def _watch_workers(self, ready: Callable[[int], bool]) -> bool:
        """Each worker's zero: its CPU when it first answers ready (a restarted worker,
        a new pid, counts in full). True when there is nothing left to watch: the
        services are ready (a serve launches its workers before it listens) and every
        worker found has answered, or ``WORKERLESS_S`` after that they have no worker
        (a serve that runs its services in its own process)."""
        groups = _children(self.services)
        for group, pids in groups.items():
            if group not in self.startup_ticks and ready(pids[0]):
                self.startup_ticks[group] = (_cpu_ticks(pids[0])
                                             - self._first[0].get(group, {}).get(pids[0], 0))
        if self.ready:
            return False
        if groups:
            return all(group in self.startup_ticks for group in groups)
        now = time.monotonic()
        if self._parents_ready_at is None:
            self._parents_ready_at = now
        return now - self._parents_ready_at >= WORKERLESS_S

    def _read(self) -> tuple[dict[str, dict[int, int]], int, int]:
        groups: dict[str, list[int]] = {k: [v] for k, v in self.services.items()}
        if self.workers:
            groups.update(_children(self.services))
        infra = _infra_pids()
        groups["kafka"] = infra["kafka"]
        ours = {pid: name for name, pids in groups.items() for pid in pids}
        owners: dict[int, int] = {}
        groups.update(split_backends(infra["postgres"], set(ours), os.getpid(), self.pg_port,
                                     owners))
        self._pg_owner.update({pid: ours.get(client, "gone") for pid, client in owners.items()})
        groups["bench harness"] = [os.getpid()]
        ticks = {name: {p: _cpu_ticks(p) for p in pids} for name, pids in groups.items()}
        busy, total = _machine_busy()
        return ticks, busy, total

    @staticmethod
    def _delta(before: dict[str, dict[int, int]], after: dict[str, dict[int, int]]
               ) -> dict[str, int]:
        """Ticks used per group, process by process: a process that appeared counts
        from zero, one that exited is left out of this interval (per-second sampling
        keeps that loss small)."""
        return {group: sum(max(0, t - before.get(group, {}).get(pid, 0))
                           for pid, t in pids.items() if t)
                for group, pids in after.items()}

    def _sample(self) -> None:
        after, busy1, total1 = self._read()
        before, busy0, total0 = self._prev
        used = self._delta(before, after)
        for pid, ticks in after.get("postgres", {}).items():
            owner = self._pg_owner.get(pid, "background")
            self._pg_used[owner] = (self._pg_used.get(owner, 0)
                                    + max(0, ticks - before.get("postgres", {}).get(pid, 0)))
        for k, v in used.items():
            self._used[k] = self._used.get(k, 0) + v
        self._busy += busy1 - busy0
        self._prev = after, busy1, total1
        span = (total1 - total0) / (os.cpu_count() or 1)  # elapsed ticks per core
        if span <= 0:
            return
        sample = {k: v / span for k, v in used.items()}
        sample["machine busy"] = (busy1 - busy0) / span
        sample["other"] = max(0.0, sample["machine busy"] -
                              sum(v for k, v in sample.items() if k != "machine busy"))
        self.samples.append(sample)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self._first = self._prev = self._read()
        self._thread.start()
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._watcher.join()
        self._sample()

    def postgres_by_client(self) -> dict[str, float]:
        """CPU seconds of the pipeline's PostgreSQL by whom its processes serve: each
        service's backends, ``background`` (WAL writer, checkpointer, autovacuum...)."""
        return {k: round(v / TICK, 2) for k, v in sorted(self._pg_used.items())}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each component used between enter and exit (all cores), each
        service's start-up excluded once its ``ready`` probe answered."""
        used = {k: (v - self.startup_ticks.get(k, 0)) / TICK for k, v in self._used.items()}
        used["machine busy"] = (self._busy - sum(self.startup_ticks.values())) / TICK
        return used

    def us_per_event(self, events: int) -> dict[str, float]:
        """CPU µs per event of each process group, plus ``pipeline`` (the services,
        Kafka and PostgreSQL: what the pipeline costs, without the harness and
        other users) and ``machine`` (every CPU of the machine, busy for anyone)."""
        used = self.cpu_seconds()
        machine = used.pop("machine busy")
        used["pipeline"] = sum(v for k, v in used.items()
                               if is_service(k) or k in ("kafka", "postgres"))
        used["machine"] = machine
        return {k: round(v * 1e6 / max(events, 1), 1) for k, v in used.items()}

    def summary(self) -> dict[str, dict[str, float]]:
        """Per component: mean and max cores used (1.0 = one core at 100 %), CPU seconds."""
        if not self.samples:
            return {}
        names = list(self.samples[-1])
        used = self.cpu_seconds()
        summary = {name: {"mean_cores": round(sum(s.get(name, 0) for s in self.samples)
                                              / len(self.samples), 2),
                          "max_cores": round(max(s.get(name, 0) for s in self.samples), 2),
                          **({"cpu_s": round(used[name], 2)} if name in used else {})}
                   for name in names}
        pipeline = [sum(v for k, v in s.items() if is_service(k) or k in ("kafka", "postgres"))
                    for s in self.samples]
        summary["pipeline"] = {"mean_cores": round(sum(pipeline) / len(pipeline), 2),
                               "max_cores": round(max(pipeline), 2)}
        return summary
