"""node/servicestore/sqlitestore.py's group commit: the vouchers that threads of one process
offer at once share one transaction and one fsync, and each offer still returns only after the
commit that holds it (a second connection opened afterwards reads every accepted voucher), the
upsert's rule holds inside a shared transaction, and a transaction that fails raises in every
thread whose statement it held."""

from __future__ import annotations

import sqlite3
import threading

from node.servicestore import open_service_store
from node.servicestore.sqlitestore import _GroupCommit

PRICE = 10
SIGNATURE = bytes(range(65))


def _offer_together(threads: int, offer) -> list:
    """``offer(k)`` from ``threads`` threads released at once; their results in k order."""
    results: list = [None] * threads
    start = threading.Barrier(threads)

    def run(k: int) -> None:
        start.wait()
        results[k] = offer(k)

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def test_concurrent_vouchers_share_commits_and_are_all_on_disk(tmp_path, monkeypatch):
    path = tmp_path / "state.sqlite3"
    store = open_service_store(path)
    commits = []
    commit = _GroupCommit._commit
    monkeypatch.setattr(
        _GroupCommit,
        "_commit",
        lambda self, batch: commits.append(len(batch)) or commit(self, batch),
    )
    channels = 32
    for step in range(1, 4):  # each channel raised by one call price, three times
        accepted = _offer_together(
            channels,
            lambda k, step=step: store.accept_voucher(
                k, step * PRICE, SIGNATURE, previous_at_most=(step - 1) * PRICE, limit=10**6
            ),
        )
        assert accepted == [True] * channels
    assert sum(commits) == 3 * channels
    assert len(commits) < 3 * channels  # some offers shared a commit
    with open_service_store(path) as reopened:  # another connection: what is on disk
        for k in range(channels):
            assert reopened.highest_voucher(k) == (3 * PRICE, SIGNATURE)
    store.close()


def test_one_channel_offered_at_once_accepts_exactly_one(tmp_path):
    with open_service_store(tmp_path / "state.sqlite3") as store:
        accepted = _offer_together(
            16,
            lambda k: store.accept_voucher(
                7, PRICE, bytes([k]) * 65, previous_at_most=0, limit=10**6
            ),
        )
        assert accepted.count(True) == 1
        winner = accepted.index(True)
        assert store.highest_voucher(7) == (PRICE, bytes([winner]) * 65)


def test_a_failed_transaction_raises_in_every_writer_and_stores_nothing(tmp_path):
    with open_service_store(tmp_path / "state.sqlite3") as store:
        group = store._vouchers
        results = _offer_together(
            8,
            lambda k: _error_of(
                lambda: group.rows(
                    "INSERT INTO vouchers (channel_id, cumulative, signature, claimed)"
                    " VALUES (?, '1', x'00', '0')",
                    ("same",),  # the primary key: the second insert of a batch fails
                )
            ),
        )
        failed = [r for r in results if isinstance(r, sqlite3.IntegrityError)]
        assert failed  # at least the batch holding a duplicate failed, in each of its writers
        assert all(r == [] or isinstance(r, sqlite3.IntegrityError) for r in results)
        stored = store._durable.rows("SELECT COUNT(*) FROM vouchers")[0][0]
        assert stored == results.count([])  # at most the batch that held one insert alone
        assert stored <= 1


def _error_of(call):
    try:
        return call()
    except sqlite3.Error as exc:
        return exc


def test_memory_store_takes_vouchers_through_the_same_path():
    with open_service_store(":memory:") as store:
        assert store.accept_voucher(1, PRICE, SIGNATURE, previous_at_most=0, limit=PRICE)
        assert not store.accept_voucher(1, PRICE, SIGNATURE, previous_at_most=0, limit=PRICE)
        assert store.highest_voucher(1) == (PRICE, SIGNATURE)
