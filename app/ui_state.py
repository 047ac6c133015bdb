"""What every process serving one exchange's UI shares: the sign-in nonces it issued, the jobs it
runs and the demo faucet's drips (app.auth, app.jobs, app.wallet), in one SQLite file of the data
dir (WAL).

A hosted exchange serves its UI from several processes (`modex up --hosted --ui-processes N`),
and a browser's next request may reach another one than its last: the nonce one process issued
is spent by the sign-in another receives, and a job started by one is polled through another.
Each change is one statement, so SQLite's write lock makes it atomic across threads and
processes. synchronous=NORMAL: a power cut may forget the last moment's nonces and job steps,
which only asks the visitor to sign in or look again; a fsync per request would bound the pages'
throughput by the disk.

app.resources.get_ui_state() opens the app's: ``MODEX_UI_STATE`` of the app config when given
(":memory:" keeps it in this process), else ``<data dir>/ui-state.sqlite3``.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from node.errors import ConfigError
from node.sqlite_open import open_retrying

BUSY_TIMEOUT = 30.0  # seconds a statement waits for another process's write lock
UI_STATE_FILE = "ui-state.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS siwe_nonces (nonce TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS siwe_nonces_expires ON siwe_nonces (expires);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, owner TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_started INTEGER, state TEXT NOT NULL, step TEXT NOT NULL, done INTEGER, total INTEGER,
    result TEXT NOT NULL, error TEXT, started REAL NOT NULL, finished REAL);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished);
CREATE TABLE IF NOT EXISTS faucet_drips (address TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS faucet_drips_address ON faucet_drips (address, at);
"""


class UiState:
    """The shared file, on one connection whose lock this process's threads take turns with."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        try:
            self._db = open_retrying(self._connect, BUSY_TIMEOUT)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the UI's state file {self.path}: {exc}; make the data dir "
                "writable (--data-dir)"
            ) from exc
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            if self.path != ":memory:":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def rows(self, sql: str, params: tuple = ()) -> list:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
