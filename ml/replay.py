"""Replay protection for signed inference requests: each (signer, nonce) is accepted once.

An entry is needed only until its request's deadline has passed (after that the deadline check
refuses the request anyway), so both stores forget expired entries. ``use`` is atomic: of two
concurrent requests with the same (signer, nonce) exactly one gets True. ``release`` gives a nonce
back when the server could not serve the request (queue full), so the client may retry it.

    MemoryNonceStore()             one process
    SqliteNonceStore(path)         shared by the processes of one machine, survives restarts
"""

from __future__ import annotations

import sqlite3
import threading
import time


class MemoryNonceStore:
    def __init__(self, clock=time.time):
        self._seen: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._next_prune = 0.0

    def use(self, signer: str, nonce: int, deadline: int) -> bool:
        """True the first time (signer, nonce) is seen before its deadline, else False."""
        key = (signer.lower(), int(nonce))
        with self._lock:
            now = self._clock()
            if now >= self._next_prune:
                self._seen = {k: d for k, d in self._seen.items() if d >= now}
                self._next_prune = now + 60
            if key in self._seen:
                return False
            self._seen[key] = int(deadline)
            return True

    def release(self, signer: str, nonce: int) -> None:
        with self._lock:
            self._seen.pop((signer.lower(), int(nonce)), None)

    def __len__(self) -> int:
        return len(self._seen)


class SqliteNonceStore:
    def __init__(self, path, clock=time.time):
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS used_nonces ("
            " signer TEXT NOT NULL, nonce TEXT NOT NULL, deadline INTEGER NOT NULL,"
            " PRIMARY KEY (signer, nonce))"
        )
        self._lock = threading.Lock()
        self._clock = clock

    def use(self, signer: str, nonce: int, deadline: int) -> bool:
        # nonce is a uint256: stored as decimal text (SQLite integers stop at 2**63).
        with self._lock:
            now = int(self._clock())
            self._db.execute("DELETE FROM used_nonces WHERE deadline < ?", (now,))
            cur = self._db.execute(
                "INSERT OR IGNORE INTO used_nonces (signer, nonce, deadline) VALUES (?, ?, ?)",
                (signer.lower(), str(int(nonce)), int(deadline)),
            )
            return cur.rowcount == 1

    def release(self, signer: str, nonce: int) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM used_nonces WHERE signer = ? AND nonce = ?",
                (signer.lower(), str(int(nonce))),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM used_nonces").fetchone()[0]

    def close(self) -> None:
        self._db.close()
