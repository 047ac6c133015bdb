"""Throwaway Redis and Postgres servers on 127.0.0.1 for the ServiceStore tests: started from the
Debian packages tools/setup.sh installs (redis-server, postgresql-15), in a temporary folder,
on a free port, and stopped by PID.

    with redis_server() as url: ...      # redis://127.0.0.1:PORT/0, fsyncing every write
    with postgres_server() as url: ...   # postgresql://modex@127.0.0.1:PORT/postgres (trust)

Postgres refuses to run as root: when the tests run as root its cluster belongs to, and runs as,
the ``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import redis

from node.devchain import free_port
from node.procs import stop_process

START_TIMEOUT = 30.0


def _binary(name: str, pattern: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(pattern), reverse=True)), None)
    if not found:
        pytest.fail(f"{name} is missing: run tools/setup.sh (it installs the Debian package)")
    return found


def _wait(ready, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(Exception):
            if ready():
                return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not start in {START_TIMEOUT:.0f} s: {log.read_text()[-2000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def redis_server():
    """A redis-server with the append-only file fsynced on every write (vouchers are durable)."""
    binary = _binary("redis-server", "/usr/bin/redis-server")
    with tempfile.TemporaryDirectory(prefix="modex-redis-") as folder:
        port, log = free_port(), Path(folder) / "redis.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder]
                + ["--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            _wait(lambda: redis.Redis.from_url(url).ping(), "redis-server", log)
            yield url
        finally:
            stop_process(proc, timeout=10)


def _as_postgres_user() -> dict:
    """subprocess keywords running a command as the ``postgres`` user when we are root."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


@contextlib.contextmanager
def postgres_server():
    """A fresh cluster (initdb, trust authentication, no fsync of its files while it starts)
    listening on 127.0.0.1 only; stopped by its postmaster's PID, then deleted."""
    initdb = _binary("initdb", "/usr/lib/postgresql/*/bin/initdb")
    postgres = str(Path(initdb).resolve().parent / "postgres")
    folder = Path(tempfile.mkdtemp(prefix="modex-pg-"))
    user = _as_postgres_user()
    if user:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, log, port = folder / "data", folder / "postgres.log", free_port()
    proc = None
    try:
        subprocess.run(
            [initdb, "-D", str(data), "-U", "modex", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            **user,
        )
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [postgres, "-D", str(data), "-p", str(port), "-k", str(folder)]
                + ["-c", "listen_addresses=127.0.0.1"],
                stdout=out,
                stderr=subprocess.STDOUT,
                **user,
            )
        url = f"postgresql://modex@127.0.0.1:{port}/postgres"
        _wait(lambda: psycopg.connect(url, connect_timeout=2).close() is None, "postgres", log)
        yield url
    finally:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # Postgres's fast shutdown
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                stop_process(proc)
        shutil.rmtree(folder, ignore_errors=True)
