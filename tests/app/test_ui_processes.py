"""A hosted exchange's UI in several processes sharing its port (modex/uiprocesses.py): how many
start, which settings are refused, and `modex up --hosted --ui-processes 2` on its local anvil:
a sign-in's nonce and signature reach either process (each request on a new connection), the
second process serves on its own while the first is stopped, one killed is started again, and
none outlives the exchange, nor an exchange killed with SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
import siwe
from eth_account import Account
from eth_account.messages import encode_defunct

from modex.uiprocesses import AUTOMATIC_MAX, ui_process_count
from node.config import load_config
from node.errors import ConfigError
from node.procs import running as alive
from tests.app.conftest import modex_up_process

CORES = len(os.sched_getaffinity(0))


def config(tmp_path, **settings):
    return load_config(None, env={}, data_dir=tmp_path, **settings)


def test_one_process_per_core_for_a_hosted_exchange_else_one(tmp_path):
    assert ui_process_count(config(tmp_path, hosted=True)) == min(CORES, AUTOMATIC_MAX)
    assert ui_process_count(config(tmp_path)) == 1
    assert ui_process_count(config(tmp_path, hosted=True, chain="embedded")) == 1
    assert ui_process_count(config(tmp_path, hosted=True, ui_processes=3)) == 3
    assert ui_process_count(config(tmp_path, ui_processes=1)) == 1


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"ui_processes": 2}, "add --hosted"),
        ({"ui_processes": 2, "hosted": True, "chain": "embedded"}, "--chain local"),
        ({"ui_processes": 65, "hosted": True}, "1 to 64"),
        ({"ui_processes": -1, "hosted": True}, "1 to 64"),
    ],
)
def test_a_count_the_exchange_cannot_run_is_refused_with_what_to_do(tmp_path, settings, says):
    with pytest.raises(ConfigError, match="ui_processes") as refused:
        ui_process_count(config(tmp_path, **settings))
    assert says in str(refused.value)


def ui_children(pid: int) -> list[int]:
    """`modex up`'s UI processes (multiprocessing's spawned children; not its anvil)."""
    listed, found = [], []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):  # each thread's apart: the
        with contextlib.suppress(OSError):  # watcher thread starts the replacements
            listed += task.read_text().split()
    for child in listed:
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


class Visitor:
    """A browser: its cookies, every request on a new connection (urllib keeps none open), so
    that each may reach either process."""

    def __init__(self, url: str, timeout: float = 30):
        self.url, self.timeout = url, timeout
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self.account = Account.create()

    def get(self, path: str) -> str:
        with self.opener.open(self.url + path, timeout=self.timeout) as r:
            return r.read().decode()

    def sign_in(self, chain_id: int) -> int:
        page = self.get("/")
        token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        nonce = re.search(r'"nonce":\s*"([^"]+)"', self.get("/auth/nonce")).group(1)
        text = siwe.SiweMessage(
            domain=self.url.split("://", 1)[1],
            address=self.account.address,
            uri=self.url,
            version="1",
            chain_id=chain_id,
            nonce=nonce,
            issued_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        ).prepare_message()
        signature = self.account.sign_message(encode_defunct(text=text)).signature
        request = urllib.request.Request(
            self.url + "/auth/siwe",
            data=json.dumps({"message": text, "signature": "0x" + bytes(signature).hex()}).encode(),
            headers={"Content-Type": "application/json", "X-CSRFToken": token, "Origin": self.url},
        )
        with self.opener.open(request, timeout=self.timeout) as r:
            return r.status


def chain_id_of(url: str) -> int:
    with urllib.request.urlopen(f"{url}/api/health", timeout=30) as r:
        return int(json.loads(r.read())["chain_id"])


@contextlib.contextmanager
def stopped(pid: int):
    """The process frozen (SIGSTOP) for the block: only the others can accept."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


# A parent that starts a child watching it as a UI process does, says the child's pid, and waits;
# the child says when it watches (both on the parent's stdout).
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", CHILD])
print(child.pid, flush=True)
time.sleep(600)
"""
CHILD = """
import os, signal, sys, time
from modex.uiprocesses import stop_when_orphaned
signal.signal(signal.SIGTERM, signal.default_int_handler)
stop_when_orphaned(os.getppid())
print("watching", flush=True)
try:
    time.sleep(600)
except KeyboardInterrupt:
    sys.exit(0)
"""


def test_a_ui_process_stops_when_its_parent_is_killed():
    # SIGKILL leaves the exchange no chance to stop its UI processes: each watches its parent.
    parent = subprocess.Popen(
        [sys.executable, "-c", f"CHILD = {CHILD!r}\n{PARENT}"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        child = int(parent.stdout.readline())
        assert parent.stdout.readline() == "watching\n"
        assert alive(child)
    finally:
        parent.kill()
        parent.wait()
    wait_for(lambda: not alive(child), 30, "the orphaned child still runs")


def test_a_hosted_exchange_serves_its_ui_from_two_processes(tmp_path):
    data = tmp_path / "node"
    env = {"MODEX_PASSWORD": "node password for the test"}
    args = ("--hosted", "--no-demo", "--ui-processes", "2")
    with modex_up_process(data, *args, env=env) as (proc, url, log_path):
        assert "served by 2 processes" in log_path.read_text()
        children = ui_children(proc.pid)
        assert len(children) == 1, children
        chain_id = chain_id_of(url)
        # Nonce and sign-in on new connections: with nonces kept per process, about half of
        # these would have reached the other one and been refused.
        for _ in range(12):
            assert Visitor(url).sign_in(chain_id) == 200
        # The second process serves on its own: pages, and a whole sign-in.
        with stopped(proc.pid):
            assert "Modex" in Visitor(url).get("/")
            assert Visitor(url).sign_in(chain_id) == 200
        # One that ends is started again.
        os.kill(children[0], signal.SIGKILL)
        wait_for(
            lambda: [c for c in ui_children(proc.pid) if c != children[0]],
            120,
            "the killed UI process was not started again:\n" + log_path.read_text()[-3000:],
        )
        replacement = [c for c in ui_children(proc.pid) if c != children[0]][0]
        wait_for(lambda: "starting another" in log_path.read_text(), 30, "not said")
        with stopped(proc.pid):  # its connections wait in the socket's queue until it is ready
            assert Visitor(url, timeout=180).sign_in(chain_id) == 200
        # The exchange's stop stops them all.
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert not alive(replacement)
