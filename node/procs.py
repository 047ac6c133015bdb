"""Processes by their PID: stopping the helpers Modex starts (anvil, the IPFS daemon), and what
Linux's /proc says of a process (running or a zombie, when it started)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds; reaps it."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat from the third (the state) on, so that ``[19]`` is field 22
    of proc(5); the command name before them may hold spaces and parentheses. None when the
    process is gone, or where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def running(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie (ended, not yet reaped)."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def process_started(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (None: gone, or no /proc). With the pid, it
    names one process: a pid is reused once its process has ended."""
    stat = proc_stat(pid)
    return int(stat[19]) if stat is not None else None
