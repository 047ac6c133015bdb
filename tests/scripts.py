"""Python started as a child process from the repository root, the way a user starts a script or
a benchmark: the tests that run one end to end share how it is started and how its output is read.

    run_python(*args, timeout=...)        `python ARGS`, which must exit 0
    run_benchmark(name, *args, timeout=...) benchmarks/NAME.py: its printed lines and the figures of
                                          its last line (every benchmark ends with one JSON line)
"""

from __future__ import annotations

import json
import subprocess
import sys

from node import paths


def run_python(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """`python ARGS` in the repository root, its output captured as text; a non-zero exit fails
    the calling test with the end of its stderr."""
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=paths.ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def run_benchmark(name: str, *args: str, timeout: float) -> tuple[list[str], dict]:
    """benchmarks/NAME.py ARGS run to its end: (the lines it printed, the figures of the last one,
    the JSON line BENCHMARKS.md quotes)."""
    proc = run_python(str(paths.ROOT / "benchmarks" / f"{name}.py"), *args, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])
