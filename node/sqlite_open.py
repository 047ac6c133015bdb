"""Opening a SQLite file that other processes open at the same moment.

Switching a new file to WAL needs a moment of exclusive access, and SQLite refuses it at once
("database is locked"), without its busy handler, while another connection is opening the same
file: `modex up` opens its state files from several threads and processes at start. The open is
tried again until the busy timeout.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def open_retrying(connect: Callable[[], T], timeout: float) -> T:
    """``connect()``, tried again for up to ``timeout`` seconds while SQLite says the file is
    locked; ``connect`` must close what it opened before it raises."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) and time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            raise
