"""Start and stop a local anvil node (npm @foundry-rs/anvil-linux-amd64) on 127.0.0.1.

Used by tests, benchmarks and `modex up`'s local chain (node/localchain.py). The process is
stopped by its PID.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Self

from node import paths
from node.errors import ChainError
from node.procs import stop_process

log = logging.getLogger(__name__)

# anvil's default mnemonic gives these well-known dev accounts; tests use them as funded wallets.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Anvil:
    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(parent_pid: int):
    """A preexec_fn: the child gets SIGTERM when the thread that started it dies (even by
    SIGKILL), so an anvil never outlives the process that owns it. libc is looked up here,
    before the fork: the child only makes two system calls."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def start_anvil(
    port: int | None = None,
    accounts: int = 10,
    balance_eth: int = 10_000,
    chain_id: int = 31337,
    block_time: float | None = None,
    extra_args: list[str] | None = None,
    *,
    owned: bool = False,
) -> Anvil:
    """Start anvil and wait until it answers JSON-RPC; raise ChainError if it does not.

    ``owned``: anvil belongs to this process: it runs in its own session (a terminal's Ctrl-C
    reaches only this process, which stops anvil itself, after saving its state) and gets
    SIGTERM when this process dies without stopping it (Linux; started from the main thread,
    whose exit the kernel watches)."""
    if not paths.ANVIL_BIN.exists():
        raise ChainError(f"anvil not found at {paths.ANVIL_BIN}: run `bash tools/setup.sh`")
    port = port or free_port()
    cmd = [
        str(paths.ANVIL_BIN),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--accounts",
        str(accounts),
        "--balance",
        str(balance_eth),
        "--chain-id",
        str(chain_id),
        "--mnemonic",
        ANVIL_MNEMONIC,
        "--hardfork",
        "prague",
        "--silent",
    ]
    if block_time:
        cmd += ["--block-time", str(block_time)]
    cmd += extra_args or []
    # stderr goes to an unlinked temp file, not a pipe: nobody reads a pipe during a long run,
    # and a full pipe would block anvil.
    with tempfile.TemporaryFile() as errlog:  # anvil keeps its own descriptor of it
        owner = {"start_new_session": True, "preexec_fn": _die_with(os.getpid())} if owned else {}
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errlog, **owner)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                errlog.seek(0)
                err = errlog.read().decode(errors="replace")
                raise ChainError(f"anvil exited at start (port {port}): {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return Anvil(proc, port)
            except OSError:
                time.sleep(0.02)
        proc.kill()
        proc.wait()
    raise ChainError(f"anvil did not start listening on 127.0.0.1:{port} within 10 s")
