"""``bonychat serve`` subprocesses, their peak RSS, and who uses the CPU meanwhile."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from .embedded import DATA, bonychat

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


class ServiceDied(RuntimeError):
    """A service process exited while it should have been working."""


class ServeProcess:
    """One ``bonychat serve --services X`` with its stderr (JSON log lines) in a file."""

    def __init__(self, services: str, env: Mapping[str, str], name: str) -> None:
        logs = DATA / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = logs / f"{name}-{os.getpid()}-{time.time_ns()}.log"
        with self.log_path.open("wb") as handle:
            self.popen = subprocess.Popen(
                [bonychat(), "serve", "--services", services], env=dict(env),
                stdout=subprocess.DEVNULL, stderr=handle, cwd=ROOT)
        self.peak_rss_mb: float | None = None

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

    def batches(self) -> dict[str, dict[str, float]]:
        """Per ``service`` label of its ``/metrics``: batches, mean size, seconds in them."""
        port = self.port()
        if port is None:
            return {}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
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


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _machine_busy() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values[:8]) - idle, sum(values[:8])


def _infra_pids() -> dict[str, list[int]]:
    found: dict[str, list[int]] = {"kafka": [], "postgres": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm == "postgres":
                found["postgres"].append(int(entry.name))
            elif comm == "java" and b"kafka.Kafka" in (entry / "cmdline").read_bytes():
                found["kafka"].append(int(entry.name))
        except OSError:
            continue
    return found


class CpuSampler:
    """Samples, once a second, the cores used by each service, Kafka, PostgreSQL (every
    backend, ours or not), this harness, and everything else on the machine."""

    def __init__(self, services: Mapping[str, int], interval: float = 1.0) -> None:
        self.services = dict(services)
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> tuple[dict[str, int], int, int]:
        groups: dict[str, list[int]] = {k: [v] for k, v in self.services.items()}
        groups.update(_infra_pids())
        groups["bench harness"] = [os.getpid()]
        ticks = {name: sum(_cpu_ticks(p) for p in pids) for name, pids in groups.items()}
        busy, total = _machine_busy()
        return ticks, busy, total

    def _run(self) -> None:
        before, busy0, total0 = self._read()
        cores = os.cpu_count() or 1
        while not self._stop.wait(self.interval):
            after, busy1, total1 = self._read()
            span = (total1 - total0) / cores  # elapsed ticks per core
            if span <= 0:
                continue
            sample = {k: max(0, after[k] - before.get(k, after[k])) / span for k in after}
            sample["machine busy"] = (busy1 - busy0) / span
            sample["other"] = max(0.0, sample["machine busy"] -
                                  sum(v for k, v in sample.items() if k != "machine busy"))
            self.samples.append(sample)
            before, busy0, total0 = after, busy1, total1

    def __enter__(self) -> CpuSampler:
        self._first = self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._last = self._read()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each component used between enter and exit (all cores)."""
        (first, busy0, _), (last, busy1, _) = self._first, self._last
        used = {k: (last[k] - first.get(k, last[k])) / TICK for k in last}
        used["machine busy"] = (busy1 - busy0) / TICK
        return used

    def summary(self) -> dict[str, dict[str, float]]:
        """Per component: mean and max cores used (1.0 = one core at 100 %), CPU seconds."""
        if not self.samples:
            return {}
        names = list(self.samples[-1])
        used = self.cpu_seconds()
        return {name: {"mean_cores": round(sum(s.get(name, 0) for s in self.samples)
                                           / len(self.samples), 2),
                       "max_cores": round(max(s.get(name, 0) for s in self.samples), 2),
                       **({"cpu_s": round(used[name], 2)} if name in used else {})}
                for name in names}
