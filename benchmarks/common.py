"""What the benchmarks here do alike: the options of those that time large files, the state of the (shared) machine they report beside their
figures, a scratch folder removed at the end, and their last line, one JSON object with every
figure (the line BENCHMARKS.md quotes and tests/scripts.py's run_benchmark reads).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def add_file_arguments(parser: argparse.ArgumentParser, *, repeat: int) -> None:
    """--size-mb, --repeat and --tmpdir: the options of the benchmarks that time large files."""
    parser.add_argument("--size-mb", type=int, default=1024, help="size of each file in MiB")
    parser.add_argument(
        "--repeat", type=int, default=repeat, help="runs per file figure; the best counts"
    )
    parser.add_argument("--tmpdir", default=None, help="where to write the test files")


def machine_state() -> dict:
    """The cores this process may use and the load average now (the machine is shared)."""
    return {
        "cores_usable": len(os.sched_getaffinity(0)),
        "load_avg_at_start": round(os.getloadavg()[0], 2),
    }


@contextmanager
def scratch_dir(prefix: str, parent: str | None = None) -> Iterator[Path]:
    """A new folder under ``parent`` (default: the system's temporary folder) for the files a
    benchmark writes, removed with everything in it at the end."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def print_figures(figures: dict) -> None:
    """The benchmark's last line: every figure as one JSON object, keys sorted."""
    print(json.dumps(figures, sort_keys=True))
