"""Command-line benchmark (issue 12 item 10): the start-up of `modex` commands that need no chain,
and `modex hash` of two large files against `openssl dgst -sha256` run on them one after the other.

    .venv/bin/python benchmarks/cli_startup.py [--runs 7] [--size-mb 1024] [--repeat 3]
                                               [--tmpdir DIR]

Every figure is the wall clock of whole processes, start-up included:
- python_startup_s: `python -c pass` with the same interpreter, the floor every command pays.
- startup_help_s, startup_hash_s, startup_cid_s, startup_seal_s: median of --runs runs of
  `modex --help`, `modex hash` of a one-file folder, `modex cid` and `modex seal` of a 4 KiB
  file (target: each at most 0.25 s).
- hash_2files_s: `modex hash` of a folder holding two files of --size-mb MiB (page cache warm,
  best of --repeat, as in benchmarks/content.py); the files are hashed in parallel threads.
- openssl_2files_s: `openssl dgst -sha256 A` and then `openssl dgst -sha256 B`, best of --repeat.
- hash_vs_openssl: openssl_2files_s / hash_2files_s (two cores allow up to ~2x; target > 1).
The model hash modex prints is checked against one built from openssl's two digests.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import add_file_arguments, machine_state, print_figures, scratch_dir
from benchmarks.content_crypto import read_all, write_random_file
from node.content.manifest import manifest_from_files

KEY_HEX = "42" * 32
STARTUP_TARGET_S = 0.25


def modex_command() -> list[str]:
    """The installed `modex` entry point beside this interpreter, or `python -m modex`."""
    entry_point = Path(sys.executable).parent / "modex"
    return [str(entry_point)] if entry_point.exists() else [sys.executable, "-m", "modex"]


def wall_times(argv: list[str], runs: int) -> tuple[list[float], str]:
    """Wall-clock seconds of ``runs`` runs of ``argv``, and the last run's stdout."""
    times, out = [], ""
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t)
        out = proc.stdout
    return times, out


def median_wall(argv: list[str], runs: int) -> float:
    return statistics.median(wall_times(argv, runs)[0])


def measure_startup(base: Path, runs: int) -> dict:
    modex = modex_command()
    model = base / "tiny-model"
    model.mkdir()
    small = model / "weights.bin"
    small.write_bytes(os.urandom(4096))
    commands = {
        "help": [*modex, "--help"],
        "hash": [*modex, "hash", str(model)],
        "cid": [*modex, "cid", str(small)],
        "seal": [*modex, "seal", "--key-hex", KEY_HEX, str(small), str(base / "weights.sealed")],
    }
    r = {"python_startup_s": round(median_wall([sys.executable, "-c", "pass"], runs), 4)}
    for name, argv in commands.items():
        r[f"startup_{name}_s"] = round(median_wall(argv, runs), 4)
    return r


def measure_two_files(base: Path, size: int, repeat: int) -> dict:
    folder = base / "two-files"
    folder.mkdir()
    files = [folder / "a.safetensors", folder / "b.safetensors"]
    for path in files:
        write_random_file(path, size)  # random bytes: neither compressible nor sparse
    for path in files:
        read_all(path)  # warm the page cache
    hash_times, printed = wall_times([*modex_command(), "hash", str(folder)], repeat)
    hash_s = min(hash_times)

    def openssl_one_after_the_other() -> list[str]:
        return [
            subprocess.run(
                ["openssl", "dgst", "-sha256", "-r", str(path)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[0]
            for path in files
        ]

    times, digests = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        digests = openssl_one_after_the_other()
        times.append(time.perf_counter() - t)
    openssl_s = min(times)
    entries = zip(files, digests, strict=True)
    expected = manifest_from_files(
        {"path": path.name, "size": size, "sha256": digest} for path, digest in entries
    ).model_hash_hex
    if printed.strip() != expected:
        raise SystemExit(f"modex hash printed {printed.strip()}, openssl's digests give {expected}")
    return {
        "hash_2files_s": round(hash_s, 3),
        "openssl_2files_s": round(openssl_s, 3),
        "hash_vs_openssl": round(openssl_s / hash_s, 3),
        "hash_2files_gbps": round(2 * size / hash_s / 1e9, 3),
    }


def print_summary(r: dict, runs: int) -> None:
    print(
        f"cores usable: {r['cores_usable']}; load average at start {r['load_avg_at_start']}, "
        f"at end {r['load_avg_at_end']}"
    )
    print(f"python -c pass: {r['python_startup_s']:.3f} s (the interpreter's own start-up)")
    for name in ("help", "hash", "cid", "seal"):
        seconds = r[f"startup_{name}_s"]
        verdict = "ok" if seconds <= STARTUP_TARGET_S else "OVER"
        print(
            f"modex {name:<6} {seconds:.3f} s (median of {runs}; target <= "
            f"{STARTUP_TARGET_S} s: {verdict})"
        )
    print(
        f"modex hash of 2 x {r['size_bytes'] / 2**20:.0f} MiB: {r['hash_2files_s']:.3f} s "
        f"({r['hash_2files_gbps']:.3f} GB/s) vs openssl dgst -sha256 one after the other "
        f"{r['openssl_2files_s']:.3f} s -> {r['hash_vs_openssl']:.2f}x (two cores allow ~2x)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per start-up figure (median)")
    add_file_arguments(parser, repeat=3)
    args = parser.parse_args(argv)
    size = args.size_mb << 20
    with scratch_dir("modex-bench-cli-", args.tmpdir) as base:
        r = {"size_bytes": size, **machine_state(), "modex": " ".join(modex_command())}
        r.update(measure_startup(base, args.runs))
        r.update(measure_two_files(base, size, args.repeat))
        r["load_avg_at_end"] = round(os.getloadavg()[0], 2)
    print_summary(r, args.runs)
    print_figures(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
