"""node/localchain.py: `modex up`'s local chain, an anvil whose state is kept in a folder. A
restart finds the same chain; a kill of anvil keeps the last periodic save whole; a state file
cut short is refused with what to do (nothing starts over it); files of a chain that no longer
exists are set aside; anvil dies with the process that owns it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from node.errors import ConfigError
from node.localchain import BACKUP_FILE, GENESIS_FILE, STATE_FILE, open_local_chain

pytestmark = pytest.mark.anvil


def send(w3, value: int = 1) -> dict:
    """One transaction, so one block (anvil mines each at once)."""
    tx = w3.eth.send_transaction(
        {"from": w3.eth.accounts[0], "to": w3.eth.accounts[1], "value": value}
    )
    return w3.eth.wait_for_transaction_receipt(tx)


def saved_head(folder) -> int:
    """The head block of the state file's chain (-1 before the first save)."""
    try:
        number = json.loads((folder / STATE_FILE).read_text())["best_block_number"]
    except FileNotFoundError:
        return -1
    return int(number, 16) if isinstance(number, str) else int(number)


def test_a_restart_finds_the_same_chain(tmp_path):
    folder = tmp_path / "chain"
    chain = open_local_chain(folder, save_interval=None)
    receipt = send(chain.w3, 12345)
    head = chain.w3.eth.get_block("latest")
    balance = chain.w3.eth.get_balance(chain.w3.eth.accounts[1])
    chain.stop()  # saves once more, then stops anvil by its PID
    assert chain.anvil.process.poll() is not None
    genesis = json.loads((folder / GENESIS_FILE).read_text())

    # anvil adds a new block 0 (stamped with the load time) at every load, and which one it
    # answers for block 0 varies: the chain's genesis must still read the same every time.
    for _ in range(3):
        time.sleep(1.1)  # another second: another block 0
        saved = (folder / STATE_FILE).read_bytes()
        again = open_local_chain(folder, save_interval=None)
        try:
            w3 = again.w3
            assert w3.eth.get_block(head["number"])["hash"] == head["hash"]
            assert w3.eth.get_balance(w3.eth.accounts[1]) == balance
            assert w3.eth.get_transaction_receipt(receipt["transactionHash"])["status"] == 1
            assert (folder / BACKUP_FILE).read_bytes() == saved  # kept before anvil loads it
            assert again.genesis() == genesis
            send(w3, 0)  # one more block, no change to the balance
        finally:
            again.stop()
    assert json.loads((folder / GENESIS_FILE).read_text()) == genesis
    assert not list(tmp_path.glob("chain-stale-*"))  # nothing was taken for another chain


def test_a_kill_of_anvil_keeps_the_last_periodic_save(tmp_path, caplog):
    """anvil's own --state-interval rewrites its file in place (O_TRUNC, then write): a kill in
    the middle left half a file. The saves here are atomic: a kill keeps the last one whole."""
    folder = tmp_path / "chain"
    chain = open_local_chain(folder, save_interval=0.2)
    send(chain.w3)
    send(chain.w3)
    deadline = time.monotonic() + 30
    while saved_head(folder) < 2:
        assert time.monotonic() < deadline, "the periodic save never came"
        time.sleep(0.1)
    os.kill(chain.anvil.process.pid, signal.SIGKILL)
    chain.anvil.process.wait()
    saved = (folder / STATE_FILE).read_bytes()
    with caplog.at_level(logging.WARNING):
        chain.stop()  # anvil is gone: the final save cannot happen, the last one stands
    assert "keeps the last save" in caplog.text
    assert (folder / STATE_FILE).read_bytes() == saved
    assert not list(folder.glob(".*.tmp"))

    again = open_local_chain(folder, save_interval=None)
    try:
        assert again.w3.eth.block_number == 2
    finally:
        again.stop()


def test_a_state_file_cut_short_is_refused_with_what_to_do(tmp_path):
    folder = tmp_path / "chain"
    for _ in range(2):  # the second start keeps a backup of what the first saved
        chain = open_local_chain(folder, save_interval=None)
        send(chain.w3)
        chain.stop()
    whole = (folder / STATE_FILE).read_bytes()
    cut = whole[: len(whole) // 2]
    (folder / STATE_FILE).write_bytes(cut)
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    with pytest.raises(ConfigError) as info:
        open_local_chain(folder, save_interval=None)
    message = str(info.value)
    assert f"{folder / STATE_FILE} cannot be loaded" in message
    assert "nothing was started over it" in message
    assert f"copy {folder / BACKUP_FILE} over it" in message
    assert "`modex up --reset`" in message
    assert "\n" not in message
    assert (folder / STATE_FILE).read_bytes() == cut  # the user's file is left as it was
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before  # no anvil

    (folder / BACKUP_FILE).replace(folder / STATE_FILE)  # what the message says to do
    again = open_local_chain(folder, save_interval=None)
    try:
        assert again.w3.eth.block_number == 1  # the chain as the second start loaded it
    finally:
        again.stop()


def test_files_of_a_chain_that_no_longer_exists_are_set_aside(tmp_path, caplog):
    """The state deleted by hand: the index, keys and deployment beside it describe a chain that
    is gone. They are moved aside (said), never shown as if they were this chain's."""
    folder = tmp_path / "chain"
    chain = open_local_chain(folder, save_interval=None)
    send(chain.w3)
    chain.stop()
    (folder / "index.sqlite3").write_text("the old chain's index")
    (folder / STATE_FILE).unlink()

    with caplog.at_level(logging.WARNING):
        again = open_local_chain(folder, save_interval=None)
    try:
        assert again.w3.eth.block_number == 0
        assert list(folder.iterdir()) == []  # genesis.json comes with the first block
        [stale] = tmp_path.glob("chain-stale-*")
        assert (stale / "index.sqlite3").read_text() == "the old chain's index"
        assert f"{folder / STATE_FILE} is missing" in caplog.text and str(stale) in caplog.text
    finally:
        again.stop()


def test_a_state_from_another_chain_sets_the_files_beside_it_aside(tmp_path, caplog):
    folder = tmp_path / "chain"
    chain = open_local_chain(folder, save_interval=None)
    send(chain.w3)
    chain.stop()
    record = json.loads((folder / GENESIS_FILE).read_text())
    (folder / GENESIS_FILE).write_text(json.dumps({**record, "genesis_hash": "0x" + "ab" * 32}))
    (folder / "keyvault.json").write_text("{}")

    with caplog.at_level(logging.WARNING):
        again = open_local_chain(folder, save_interval=None)
    try:
        assert sorted(p.name for p in folder.iterdir()) == [GENESIS_FILE, BACKUP_FILE, STATE_FILE]
        assert json.loads((folder / GENESIS_FILE).read_text()) == record
        [stale] = tmp_path.glob("chain-stale-*")
        assert (stale / "keyvault.json").exists()
        assert "is not the one they were made on" in caplog.text
    finally:
        again.stop()


OWNER = """
import sys, time
from node.localchain import open_local_chain
chain = open_local_chain(sys.argv[1])
print(chain.anvil.process.pid, flush=True)
time.sleep(600)
"""


def test_anvil_dies_with_the_process_that_owns_it(tmp_path):
    """SIGKILL of the owner (`modex up`) sends anvil SIGTERM (prctl PR_SET_PDEATHSIG)."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path / "chain")], stdout=subprocess.PIPE, text=True
    )
    try:
        anvil = psutil.Process(int(owner.stdout.readline()))
        assert anvil.is_running() and os.getsid(anvil.pid) != os.getsid(owner.pid)
    finally:
        owner.kill()
        owner.wait()
    gone, alive = psutil.wait_procs([anvil], timeout=10)
    assert not alive, "anvil outlived the process that started it"
