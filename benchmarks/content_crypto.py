"""Content-layer crypto benchmark: model hash, seal and unseal against their hardware baselines.

    .venv/bin/python benchmarks/content_crypto.py [--size-mb 1024] [--repeat 2] [--tmpdir DIR]

Figures (best of ``--repeat`` runs, page cache warm, same run, same bytes):
- hash_vs_sha256sum: model hash of a directory holding one file vs `openssl dgst -sha256` on that
  file (the fast baseline: Debian's coreutils sha256sum does not use the CPU's SHA instructions).
- hash_2files_speedup: model hash of two such files (parallel threads) vs the one-file rate.
- seal_vs_raw / unseal_vs_raw: seal_stream (file -> discarding sink) and unseal_stream (sealed
  file -> discarding sink) vs raw AESGCM.encrypt over the same bytes in memory, 1 MiB at a time.
The last line printed is a JSON object with every figure. benchmarks/content.py (the CID and
store benchmark) imports :func:`measure_crypto` and the timing and file helpers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchmarks.common import add_file_arguments, print_figures
from node.content.manifest import build_manifest
from node.content.seal import DEFAULT_CHUNK_SIZE, seal_stream, unseal_stream

GB = 1e9


class _Discard:
    """A sink that drops what it is given (the benchmark times the crypto path, not a disk)."""

    def write(self, b) -> int:
        return len(b)


# The helpers below are shared with benchmarks/content.py (the CID and store benchmark).


def best_of(fn, repeat: int) -> tuple[float, object]:
    """The shortest time of `repeat` calls of fn, in seconds, and what the last call returned."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def write_random_file(path: Path, size: int) -> None:
    """A file of `size` bytes that do not compress (16 MiB of random bytes, repeated)."""
    block = os.urandom(16 << 20)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def read_all(path: Path) -> None:
    """Read the file through, so that it is in the page cache for what reads it next."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 << 20)
        while f.readinto(buf):
            pass


def openssl_sha256_seconds(path: Path, repeat: int) -> float:
    """The baseline hash: the best time of `openssl dgst -sha256` on the file."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise SystemExit("openssl is needed for the baseline (apt-get install openssl)")
    return best_of(
        lambda: subprocess.run(
            [openssl, "dgst", "-sha256", str(path)], check=True, stdout=subprocess.DEVNULL
        ),
        repeat,
    )[0]


def measure_crypto(
    size_bytes: int = 1 << 30, tmpdir: str | os.PathLike | None = None, *, repeat: int = 2
) -> dict:
    """Run the content crypto benchmark over ``size_bytes`` files; return the figures (a dict)."""
    own = tmpdir is None
    base = Path(tempfile.mkdtemp(prefix="modex-bench-crypto-")) if own else Path(tmpdir)
    try:
        one, two = base / "one", base / "two"
        one.mkdir(exist_ok=True)
        two.mkdir(exist_ok=True)
        a, b = one / "weights-a.bin", two / "weights-b.bin"
        write_random_file(a, size_bytes)
        write_random_file(b, size_bytes)
        if not (two / "weights-a.bin").exists():
            os.link(a, two / "weights-a.bin")  # the 2-file directory holds a and b
        for p in (a, b):
            read_all(p)  # warm the page cache: every contender reads from memory

        t_openssl = openssl_sha256_seconds(a, repeat)
        t_hash1 = best_of(lambda: build_manifest(one), repeat)[0]
        t_hash2 = best_of(lambda: build_manifest(two, workers=2), repeat)[0]

        key = os.urandom(32)
        data = a.read_bytes()
        view = memoryview(data)
        aead = AESGCM(key)
        nonce = bytes(12)

        def raw():
            for off in range(0, len(view), DEFAULT_CHUNK_SIZE):
                aead.encrypt(nonce, view[off : off + DEFAULT_CHUNK_SIZE], b"")

        t_raw = best_of(raw, repeat)[0]

        sealed = base / "weights-a.sealed"

        def seal_to_sink():
            with open(a, "rb", buffering=0) as src:
                seal_stream(key, src, _Discard())

        with open(a, "rb", buffering=0) as src, open(sealed, "wb") as dst:
            seal_stream(key, src, dst)
        read_all(sealed)
        t_seal = best_of(seal_to_sink, repeat)[0]

        def unseal_to_sink():
            with open(sealed, "rb", buffering=0) as src:
                unseal_stream(key, src, _Discard())

        t_unseal = best_of(unseal_to_sink, repeat)[0]
    finally:
        if own:
            shutil.rmtree(base, ignore_errors=True)

    n = size_bytes
    return {
        "size_bytes": n,
        "baseline_hash": "openssl dgst -sha256 (file in page cache)",
        "baseline_aead": "AESGCM.encrypt over the same bytes in memory, 1 MiB chunks",
        "openssl_sha256_gbps": round(n / t_openssl / GB, 3),
        "hash_1file_gbps": round(n / t_hash1 / GB, 3),
        "hash_2files_gbps": round(2 * n / t_hash2 / GB, 3),
        "raw_aesgcm_gbps": round(n / t_raw / GB, 3),
        "seal_gbps": round(n / t_seal / GB, 3),
        "unseal_gbps": round(n / t_unseal / GB, 3),
        "hash_vs_sha256sum": round(t_openssl / t_hash1, 3),
        "hash_2files_speedup": round((2 * n / t_hash2) / (n / t_hash1), 3),
        "seal_vs_raw": round(t_raw / t_seal, 3),
        "unseal_vs_raw": round(t_raw / t_unseal, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_file_arguments(parser, repeat=2)
    args = parser.parse_args(argv)
    r = measure_crypto(args.size_mb << 20, args.tmpdir, repeat=args.repeat)
    print(f"cores usable: {len(os.sched_getaffinity(0))}; size {r['size_bytes'] / GB:.2f} GB")
    print(
        f"model hash, 1 file : {r['hash_1file_gbps']:.3f} GB/s vs {r['baseline_hash']} "
        f"{r['openssl_sha256_gbps']:.3f} GB/s -> {r['hash_vs_sha256sum']:.2f}x (target >= 0.95)"
    )
    print(
        f"model hash, 2 files: {r['hash_2files_gbps']:.3f} GB/s -> "
        f"{r['hash_2files_speedup']:.2f}x the 1-file rate (target >= 1.7 on 2 cores)"
    )
    print(
        f"seal   : {r['seal_gbps']:.3f} GB/s vs {r['baseline_aead']} {r['raw_aesgcm_gbps']:.3f} "
        f"GB/s -> {r['seal_vs_raw']:.2f}x (target >= 0.85)"
    )
    print(f"unseal : {r['unseal_gbps']:.3f} GB/s -> {r['unseal_vs_raw']:.2f}x (target >= 0.85)")
    print_figures(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
