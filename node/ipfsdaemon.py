"""Start and stop a local IPFS daemon (js-ipfs 0.66.1 from npm, tools/ipfs) on 127.0.0.1.

js-ipfs serves the Kubo HTTP RPC API and runs offline; Kubo itself cannot be installed from the
registries reachable here (README, "Why not ipfshttpclient"). Used by tests, benchmarks and `modex up --ipfs daemon`.
The repo is fresh (``jsipfs init --profile test``), with no swarm addresses, no bootstrap peers,
the API, gateway and gRPC ports on free 127.0.0.1 ports; the process is stopped by its PID.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx

from node import paths
from node.devchain import free_port
from node.errors import StoreError
from node.procs import stop_process

log = logging.getLogger(__name__)

IPFS_DIR = paths.ROOT / "tools" / "ipfs"
JSIPFS_BIN = IPFS_DIR / "node_modules" / ".bin" / "jsipfs"
# Node 20 lacks Promise.withResolvers, which one js-ipfs dependency calls.
POLYFILL = IPFS_DIR / "polyfill.cjs"


@dataclass
class IpfsDaemon:
    process: subprocess.Popen
    repo: Path
    api_port: int
    gateway_port: int
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def stop(self) -> None:
        stop_process(self.process)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _env(repo: Path) -> dict:
    env = dict(os.environ, IPFS_PATH=str(repo))
    env["NODE_OPTIONS"] = (env.get("NODE_OPTIONS", "") + f" --require {POLYFILL}").strip()
    return env


def init_repo(repo: Path, api_port: int, gateway_port: int) -> None:
    """``jsipfs init --profile test`` and an offline, loopback-only configuration."""
    env = _env(repo)
    proc = subprocess.run(
        [str(JSIPFS_BIN), "init", "--profile", "test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise StoreError(
            f"`jsipfs init` failed for repo {repo}: {(proc.stderr or proc.stdout).strip()[-500:]}"
        )
    config_path = repo / "config"
    config = json.loads(config_path.read_text())
    config["Addresses"].update(
        Swarm=[],
        API=f"/ip4/127.0.0.1/tcp/{api_port}",
        Gateway=f"/ip4/127.0.0.1/tcp/{gateway_port}",
        RPC=f"/ip4/127.0.0.1/tcp/{free_port()}",
    )
    config["Bootstrap"] = []
    for mount in config.get("Datastore", {}).get("Spec", {}).get("mounts", []):
        if mount.get("child", {}).get("type") == "flatfs":
            mount["child"]["sync"] = False  # a throwaway local repo: fsync per block only slows it
    config_path.write_text(json.dumps(config, indent=2))


def start_ipfs_daemon(repo: str | Path | None = None, ready_timeout: float = 60.0) -> IpfsDaemon:
    """Start js-ipfs on free loopback ports and wait until its RPC API answers ``version``.

    With ``repo=None`` a fresh repo is made in a temporary folder (removed by ``stop()``); an
    existing repo is reused as configured.
    """
    if not JSIPFS_BIN.exists():
        raise StoreError(f"js-ipfs not found at {JSIPFS_BIN}: run `bash tools/setup.sh`")
    tmp = None
    if repo is None:
        tmp = tempfile.TemporaryDirectory(prefix="modex-ipfs-")
        repo = Path(tmp.name) / "repo"
    repo = Path(repo)
    if not (repo / "config").exists():
        init_repo(repo, free_port(), free_port())
    config = json.loads((repo / "config").read_text())
    api_port = int(config["Addresses"]["API"].rsplit("/", 1)[1])
    gateway_port = int(config["Addresses"]["Gateway"].rsplit("/", 1)[1])
    log_path = repo / "daemon.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [str(JSIPFS_BIN), "daemon", "--enable-preload=false"],
            env=_env(repo),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    daemon = IpfsDaemon(proc, repo, api_port, gateway_port, tmp)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = log_path.read_text(errors="replace")[-1000:]
            daemon.stop()
            raise StoreError(f"the IPFS daemon exited at start (repo {repo}): {out.strip()}")
        try:
            r = httpx.post(f"{daemon.api_url}/api/v0/version", timeout=1.0)
            if r.status_code == 200:
                log.info(
                    "IPFS daemon %s ready at %s (pid %d)",
                    r.json().get("Version"),
                    daemon.api_url,
                    proc.pid,
                )
                return daemon
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    daemon.stop()
    raise StoreError(f"the IPFS daemon did not answer at {daemon.api_url} within {ready_timeout} s")
