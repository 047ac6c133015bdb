"""node/servicestore: the same contract for every backend (SQLite in memory and in a file, Redis,
Postgres, the last two started by the tests on 127.0.0.1): nonces used once and forgotten after
their deadline, vouchers raised only by at least the call price and within the deposit, trial
counts bounded, all of it atomic under threads and processes; a store that cannot be reached is
one sentence naming its URL without the password."""

from __future__ import annotations

import multiprocessing
import threading
import time

import psycopg
import pytest
import redis

from node.devchain import free_port
from node.errors import ConfigError
from node.servicestore import ServiceStoreError, open_service_store
from node.servicestore.base import redacted
from tests.node.servicestore_servers import postgres_server, redis_server

SIGNATURE = bytes(range(65))  # zero bytes and high bytes round-trip
PERSISTENT = ["sqlite", "redis", "postgres"]


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_server() as url:
        yield url


def _fresh(request, backend: str, tmp_path) -> str:
    """The URL of an empty store of ``backend``."""
    if backend == "memory":
        return ":memory:"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/state.sqlite3"
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
        return url
    url = request.getfixturevalue("postgres_url")
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS modex_used_nonces, modex_vouchers, modex_trials")
    return url


@pytest.fixture(params=["memory", *PERSISTENT])
def url(request, tmp_path):
    return _fresh(request, request.param, tmp_path)


@pytest.fixture(params=PERSISTENT)
def shared_url(request, tmp_path):
    """A store several processes (and a reopened store) share."""
    return _fresh(request, request.param, tmp_path)


@pytest.fixture
def store(url):
    with open_service_store(url) as opened:
        yield opened


# ---- nonces ----------------------------------------------------------------------------------


def test_a_nonce_is_used_once_until_released(store):
    big = 2**255 + 1  # a uint256, beyond SQLite's and Postgres's integers
    deadline = int(time.time()) + 60
    assert store.use_nonce("0xAbC", big, deadline)
    assert not store.use_nonce("0xabc", big, deadline)  # the same signer, any case
    assert store.use_nonce("0xdef", big, deadline)  # another signer's nonce
    assert store.use_nonce("0xabc", big - 1, deadline)
    store.release_nonce("0xABC", big)  # nothing was served: the request may retry
    assert store.use_nonce("0xabc", big, deadline)
    assert not store.use_nonce("0xabc", big, deadline)
    assert store.nonces_held() == 3


def test_expired_nonces_are_forgotten(url):
    """An entry lives until its deadline (the endpoint refuses an expired request anyway)."""
    with open_service_store(url) as store:
        deadline = int(time.time()) + 1
        assert store.use_nonce("0xabc", 1, deadline) and not store.use_nonce("0xabc", 1, deadline)
        assert store.use_nonce("0xabc", 2, int(time.time()) + 3600)
        assert store.use_nonce("0xabc", 4, deadline)
        while time.time() < deadline + 1.2:  # Redis's TTL ends a second after the deadline
            time.sleep(0.2)
        assert store.use_nonce("0xabc", 1, int(time.time()) + 60)  # taken again
        assert not store.use_nonce("0xabc", 2, int(time.time()) + 60)  # still live
    if url != ":memory:":
        with open_service_store(url) as store:  # a fresh store prunes on its first use
            assert store.use_nonce("0xabc", 3, int(time.time()) + 60)
            assert store.nonces_held() == 3  # 1, 2 and 3; 4 is gone


@pytest.mark.parametrize("where", [":memory:", "n.sqlite3"])
def test_expired_nonces_follow_the_stores_clock(tmp_path, where):
    now = [1000]
    path = where if where == ":memory:" else tmp_path / where
    with open_service_store(path, clock=lambda: now[0]) as store:
        assert store.use_nonce("0xabc", 9, 2000) and not store.use_nonce("0xabc", 9, 2000)
        assert store.use_nonce("0xabc", 1, 999)  # expired: kept only until the next prune
        now[0] = 10**9
        assert store.use_nonce("0xabc", 9, 10**9 + 10)  # its deadline passed: taken again
        assert store.nonces_held() == 1  # the clock moved past the prune interval


def test_used_nonces_survive_a_restart(shared_url):
    deadline = int(time.time()) + 60
    with open_service_store(shared_url) as store:
        assert store.use_nonce("0xabc", 9, deadline)
    with open_service_store(shared_url) as store:
        assert not store.use_nonce("0xabc", 9, deadline)


# ---- vouchers --------------------------------------------------------------------------------


def test_a_voucher_is_kept_only_at_least_a_call_price_above_the_last_and_within_the_deposit(store):
    price, deposit = 10, 100
    assert store.highest_voucher(7) is None
    assert not store.accept_voucher(7, 5, SIGNATURE, previous_at_most=5 - price, limit=deposit)
    assert store.accept_voucher(7, 10, SIGNATURE, previous_at_most=0, limit=deposit)
    assert store.highest_voucher(7) == (10, SIGNATURE)
    assert not store.accept_voucher(7, 15, b"\x01" * 65, previous_at_most=5, limit=deposit)
    assert not store.accept_voucher(7, 10, b"\x01" * 65, previous_at_most=0, limit=deposit)
    assert store.accept_voucher(7, 25, b"\x02" * 65, previous_at_most=15, limit=deposit)
    assert not store.accept_voucher(7, 110, b"\x03" * 65, previous_at_most=100, limit=deposit)
    assert store.highest_voucher(7) == (25, b"\x02" * 65)
    assert store.accept_voucher(7, 100, b"\x04" * 65, previous_at_most=90, limit=deposit)
    assert store.highest_voucher(8) is None  # channels are apart
    huge = 2**256 - 1
    assert store.accept_voucher(huge, huge, SIGNATURE, previous_at_most=huge - 1, limit=huge)
    assert store.highest_voucher(huge) == (huge, SIGNATURE)


def test_vouchers_to_claim_list_what_was_not_claimed_yet(store):
    assert store.vouchers_to_claim() == []
    store.accept_voucher(3, 30, SIGNATURE, previous_at_most=20, limit=100)
    store.accept_voucher(2, 10, b"\x09" * 65, previous_at_most=0, limit=100)
    assert store.vouchers_to_claim() == [(2, 10, b"\x09" * 65, 0), (3, 30, SIGNATURE, 0)]
    store.mark_claimed(3, 30)
    assert store.vouchers_to_claim() == [(2, 10, b"\x09" * 65, 0)]
    store.accept_voucher(3, 45, SIGNATURE, previous_at_most=35, limit=100)
    store.mark_claimed(3, 20)  # an older claim mined late never lowers what was claimed
    assert store.vouchers_to_claim() == [(2, 10, b"\x09" * 65, 0), (3, 45, SIGNATURE, 30)]
    store.mark_claimed(99, 5)  # a channel with no voucher: nothing to mark
    assert store.highest_voucher(99) is None


def test_an_accepted_voucher_is_there_after_a_restart(shared_url):
    with open_service_store(shared_url) as store:
        assert store.accept_voucher(1, 10, SIGNATURE, previous_at_most=0, limit=10)
    with open_service_store(shared_url) as store:
        assert store.highest_voucher(1) == (10, SIGNATURE)
        assert store.vouchers_to_claim() == [(1, 10, SIGNATURE, 0)]


def test_redis_that_does_not_fsync_every_write_refuses_vouchers(redis_url):
    server = redis.Redis.from_url(redis_url)
    server.config_set("appendfsync", "everysec")
    try:
        with open_service_store(redis_url) as store:
            with pytest.raises(ServiceStoreError, match="--appendfsync always"):
                store.accept_voucher(1, 10, SIGNATURE, previous_at_most=0, limit=10)
            assert store.use_nonce("0xabc", 1, int(time.time()) + 60)  # nonces need no fsync
    finally:
        server.config_set("appendfsync", "always")


# ---- free trials -----------------------------------------------------------------------------


def test_trials_are_counted_up_to_the_limit(store):
    assert store.use_trial(1, "0xAbC", 2) and store.use_trial(1, "0xabc", 2)
    assert not store.use_trial(1, "0xABC", 2)
    assert store.use_trial(1, "0xdef", 2) and store.use_trial(2, "0xabc", 2)
    store.release_trial(1, "0xabc")  # the call was not served
    assert store.use_trial(1, "0xabc", 2) and not store.use_trial(1, "0xabc", 2)
    assert store.use_trial(1, "0xabc", 3)  # the seller raised the limit
    assert not store.use_trial(5, "0xabc", 0)  # no trial offered
    store.release_trial(5, "0xabc")  # nothing counted: stays at zero
    assert store.use_trial(5, "0xabc", 1) and not store.use_trial(5, "0xabc", 1)


# ---- atomic under concurrency ----------------------------------------------------------------


def test_concurrent_threads_win_each_nonce_voucher_and_trial_once(url):
    stores = [open_service_store(url) for _ in range(2)]
    start = threading.Barrier(8)
    won = {"nonce": 0, "voucher": 0, "trial": 0}
    lock = threading.Lock()

    def race(index: int) -> None:
        store = stores[index % 2]  # threads share a store, and two stores share the state
        start.wait()
        results = {
            "nonce": store.use_nonce("0xabc", 42, int(time.time()) + 60),
            "voucher": store.accept_voucher(5, 10, SIGNATURE, previous_at_most=0, limit=10),
            "trial": store.use_trial(1, "0xabc", 3),
        }
        with lock:
            for key, value in results.items():
                won[key] += value

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    if url == ":memory:":  # two in-memory stores are two states: each was won once in each
        assert won == {"nonce": 2, "voucher": 2, "trial": 6}
    else:
        assert won == {"nonce": 1, "voucher": 1, "trial": 3}


def _race_in_a_process(url: str, start, steps: int) -> tuple[list, list, int]:
    """One process's go at the same nonces, voucher steps (price 10) and trials (limit 25)."""
    with open_service_store(url) as store:
        start.wait()
        nonces, vouchers, trials = [], [], 0
        for step in range(steps):
            if store.use_nonce("0xabc", step, int(time.time()) + 60):
                nonces.append(step)
            amount = (step + 1) * 10
            signature = amount.to_bytes(65, "big")
            if store.accept_voucher(9, amount, signature, previous_at_most=amount - 10, limit=400):
                vouchers.append(amount)
            trials += store.use_trial(3, "0xdef", 25)
        return nonces, vouchers, trials


def test_concurrent_processes_never_win_the_same_thing_twice(shared_url):
    processes, steps = 3, 40
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Manager().Barrier(processes)
    with ctx.Pool(processes) as pool:
        results = pool.starmap(_race_in_a_process, [(shared_url, start, steps)] * processes)
    nonces = sorted(n for won, _, _ in results for n in won)
    assert nonces == list(range(steps))  # each nonce used by exactly one process
    amounts = [a for _, won, _ in results for a in won]
    assert len(amounts) == len(set(amounts))  # no paid step answered twice
    assert sum(trials for *_, trials in results) == 25
    with open_service_store(shared_url) as store:
        assert store.highest_voucher(9) == (400, (400).to_bytes(65, "big"))


# ---- opening -----------------------------------------------------------------------------------


def test_an_unreachable_store_names_its_url_without_the_password():
    port = free_port()  # nothing listens there
    for url in (
        f"redis://:hunter2@127.0.0.1:{port}/0",
        f"postgresql://modex:hunter2@127.0.0.1:{port}/modex",
    ):
        with pytest.raises(ServiceStoreError) as caught:
            open_service_store(url)
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message and "hunter2" not in message, message
        assert "cannot be used" in message and "--state" in message


def test_an_unusable_file_or_scheme_is_one_sentence(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ServiceStoreError, match="cannot open the service state file"):
        open_service_store(tmp_path / "a-file" / "state.sqlite3")
    with pytest.raises(ConfigError, match="unknown state store 'mysql://u:\\*\\*\\*@h/db'"):
        open_service_store("mysql://u:pw@h/db")


def test_two_stores_opening_one_new_file_at_once_both_open(tmp_path):
    """`modex up` opens the same new state file twice at start-up (the exchange's and the UI's
    store); SQLite refuses a switch to WAL while the other holds it, at once: the open tries again
    (before, 9 of 60 such pairs failed with "database is locked")."""
    for attempt in range(40):
        path = tmp_path / f"s{attempt}.sqlite3"
        failures: list[Exception] = []

        def open_it(path=path, failures=failures):
            try:
                open_service_store(path).close()
            except ServiceStoreError as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures


def test_sqlite_urls_and_paths_name_the_same_file(tmp_path):
    with open_service_store(f"sqlite:///{tmp_path}/s.sqlite3") as store:
        store.use_nonce("0xabc", 1, int(time.time()) + 60)
    with open_service_store(tmp_path / "s.sqlite3") as store:
        assert not store.use_nonce("0xabc", 1, int(time.time()) + 60)
    with open_service_store("sqlite://") as store:  # in memory
        assert store.use_nonce("0xabc", 1, int(time.time()) + 60)


def test_redacted_hides_only_the_password():
    assert redacted("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redacted("postgresql://u:p@h/db?x=1") == "postgresql://u:***@h/db?x=1"
    assert redacted("postgresql://u@h/db") == "postgresql://u@h/db"
