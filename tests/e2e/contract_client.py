"""Black-box drivers for the contract acceptance suite: the installed ``bonychat``
command in a subprocess, and ``bonychat serve`` over plain HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def bonychat() -> list[str]:
    """The installed console script (next to this interpreter), else the one on PATH."""
    beside = Path(sys.executable).parent / "bonychat"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("bonychat")
    assert found, "the bonychat command is not installed"
    return [found]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BONYCHAT_")}
    env.update(extra)
    return env


def run(args: Sequence[str], *, db: Path | str | None = None, stdin: str | None = None,
        cwd: Path | None = None, env: Mapping[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return run_many([args], db=db, stdin=stdin, cwd=cwd, env=env)[0]


def run_many(commands: Sequence[Sequence[str]], *, db: Path | str | None = None,
             stdin: str | None = None, cwd: Path | None = None,
             env: Mapping[str, str] | None = None,
             ) -> list[subprocess.CompletedProcess[str]]:
    """Run several ``bonychat`` commands at once (the suite stays fast) and wait for all."""
    environment = dict(env) if env is not None else clean_env()
    if db is not None:
        environment["BONYCHAT_DATABASE_URL"] = str(db)
    procs = [(args, subprocess.Popen([*bonychat(), *args], env=environment, cwd=cwd,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True))
             for args in commands]
    done = []
    for args, proc in procs:
        out, err = proc.communicate(stdin, timeout=120)
        done.append(subprocess.CompletedProcess([*bonychat(), *args], proc.returncode,
                                                out, err))
    return done


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, (result.args, result.returncode, result.stderr)
    return json.loads(result.stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Server:
    """``bonychat serve`` without Kafka (the in-process pipeline), on a free port;
    ``db`` is an SQLite file or a PostgreSQL URL."""

    def __init__(self, db: Path | str, log: Path, **tokens: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = clean_env(BONYCHAT_DATABASE_URL=str(db), BONYCHAT_HTTP_PORT=str(self.port),
                        **{f"BONYCHAT_{k.upper()}": v for k, v in tokens.items()})
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen([*bonychat(), "serve"], env=env, cwd=log.parent,
                                         stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self) -> Server:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if self.request("GET", "/healthz").status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("bonychat serve never became ready: " + self.log.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def request(self, method: str, path: str, token: str | None = None,
                body: Any = None, raw: bytes | None = None) -> Reply:
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers), exc.read())

    def get_json(self, path: str, token: str) -> Any:
        reply = self.request("GET", path, token)
        assert reply.status == 200, (path, reply.status, reply.body)
        return reply.json()
