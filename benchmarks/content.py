"""Content-layer benchmark (issue 3): model hash, seal/unseal (benchmarks/content_crypto.py) and
IPFS CIDs, each against its named baseline in the same run, over the same bytes.

    .venv/bin/python benchmarks/content.py [--size-mb 1024] [--repeat 2] [--tmpdir DIR] [--no-daemon]

CID figures (page cache warm, best of --repeat; the daemon runs once, it is slow):
- cid_vs_sha256sum: `node.content.cid.cid_of_file` (default profile unixfs-v1-2025) vs
  `openssl dgst -sha256` on the same file (the fast sha256 here; coreutils sha256sum is ~4x slower).
- cid_vs_daemon: the same vs the IPFS daemon's `add?only-hash=true` over the same bytes
  (js-ipfs 0.66.1 through its Kubo RPC API, started by this script on 127.0.0.1; it computes the
  CID with 174 links per node, which costs it nothing extra).
- embedded_put_gbps: EmbeddedStore.put of the file (blocks written to disk), for reference.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import add_file_arguments, machine_state, print_figures, scratch_dir
from benchmarks.content_crypto import (
    best_of,
    measure_crypto,
    openssl_sha256_seconds,
    read_all,
    write_random_file,
)
from node.content.cid import DEFAULT_PROFILE, cid_of_file

GB = 1e9


def measure_cids(size_bytes: int, tmpdir: Path, *, repeat: int = 2, daemon: bool = True) -> dict:
    path = tmpdir / "content.bin"
    write_random_file(path, size_bytes)
    read_all(path)  # warm the page cache
    t_openssl = openssl_sha256_seconds(path, repeat)
    t_cid, cid = best_of(lambda: cid_of_file(path, DEFAULT_PROFILE), repeat)

    from node.content.store.embedded import EmbeddedStore

    store_dir = tmpdir / "store"
    t_put, put_cid = best_of(lambda: EmbeddedStore(store_dir).put(path), 1)
    assert put_cid == cid, (put_cid, cid)
    shutil.rmtree(store_dir, ignore_errors=True)

    n = size_bytes
    out = {
        "cid": cid,
        "cid_profile": DEFAULT_PROFILE,
        "baseline_cid": "openssl dgst -sha256 (file in page cache)",
        "openssl_sha256_gbps_cidrun": round(n / t_openssl / GB, 3),
        "cid_gbps": round(n / t_cid / GB, 3),
        "embedded_put_gbps": round(n / t_put / GB, 3),
        "cid_vs_sha256sum": round(t_openssl / t_cid, 3),
    }
    if daemon:
        from node.content.store.kubo import KuboStore
        from node.ipfsdaemon import start_ipfs_daemon

        with start_ipfs_daemon() as d, KuboStore(d.api_url, timeout=600) as kubo:
            version = kubo.version().get("Version")
            t_daemon, daemon_cid = best_of(
                lambda: kubo.add(path, profile=DEFAULT_PROFILE, only_hash=True), 1
            )
        out.update(
            {
                "baseline_daemon": f"js-ipfs {version} add?only-hash=true (Kubo RPC API, localhost)",
                "daemon_only_hash_gbps": round(n / t_daemon / GB, 3),
                "daemon_cid": daemon_cid,
                "cid_vs_daemon": round(t_daemon / t_cid, 3),
            }
        )
    return out


def print_summary(r: dict) -> None:
    print(
        f"cores usable: {r['cores_usable']}; load average at start {r['load_avg_at_start']}; "
        f"size {r['size_bytes'] / GB:.2f} GB"
    )
    if "seal_vs_raw" in r:  # measured unless --no-crypto
        print(
            f"model hash 1 file : {r['hash_1file_gbps']:.3f} GB/s vs {r['baseline_hash']} "
            f"{r['openssl_sha256_gbps']:.3f} GB/s -> {r['hash_vs_sha256sum']:.2f}x (target >= 0.95)"
        )
        print(
            f"model hash 2 files: {r['hash_2files_speedup']:.2f}x the 1-file rate (target >= 1.7)"
        )
        print(
            f"seal {r['seal_vs_raw']:.2f}x, unseal {r['unseal_vs_raw']:.2f}x vs "
            f"{r['baseline_aead']} {r['raw_aesgcm_gbps']:.3f} GB/s (target >= 0.85)"
        )
    print(
        f"CID ({r['cid_profile']}): {r['cid_gbps']:.3f} GB/s vs {r['baseline_cid']} "
        f"{r['openssl_sha256_gbps_cidrun']:.3f} GB/s -> {r['cid_vs_sha256sum']:.2f}x (target >= 0.7)"
    )
    print(f"embedded store put: {r['embedded_put_gbps']:.3f} GB/s (blocks written to disk)")
    if "cid_vs_daemon" in r:
        print(
            f"CID vs {r['baseline_daemon']} {r['daemon_only_hash_gbps']:.3f} GB/s -> "
            f"{r['cid_vs_daemon']:.2f}x (target >= 1.5)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_file_arguments(parser, repeat=2)
    parser.add_argument("--no-daemon", action="store_true", help="skip the IPFS daemon baseline")
    parser.add_argument("--no-crypto", action="store_true", help="skip hash/seal (content_crypto)")
    args = parser.parse_args(argv)
    size = args.size_mb << 20
    with scratch_dir("modex-bench-content-", args.tmpdir) as base:
        r = {"size_bytes": size, **machine_state()}
        if not args.no_crypto:
            crypto_dir = base / "crypto"
            crypto_dir.mkdir()
            r.update(measure_crypto(size, crypto_dir, repeat=args.repeat))
            shutil.rmtree(crypto_dir, ignore_errors=True)
        r.update(measure_cids(size, base, repeat=args.repeat, daemon=not args.no_daemon))
    print_summary(r)
    print_figures(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
