"""A deliverKey that is not mined is replaced at its nonce with higher fees, within the cap.

Each test runs its own anvil with automine off, so the worker's transactions sit in the node's
pool until the test mines a block (``evm_mine``). Shown: a stuck delivery (and the one queued
behind it at the next nonce) is replaced and mined, each buyer's key delivered once; one evicted
after a base-fee rise is replaced at the new fees; a worker killed between signing a replacement
and sending it resumes with the recorded transactions and never delivers twice; the fee cap is
never exceeded and is logged once; an in-flight entry of the older state format is migrated and
replaced.
"""

from __future__ import annotations

import json
import logging
import subprocess

import pytest
from modex_stack import buy_raw, make_stack, publish_model, write_model
from worker_helpers import can_open, deliveries, seller_worker

from node.devchain import start_anvil
from node.replacement import GWEI, replacement_fees, unsigned_transaction
from node.signer import dev_signer


@pytest.fixture
def stuck(tmp_path):
    """A stack on its own anvil with one listing; ``stuck.buy(role)`` buys with automine on,
    then ``stuck.hold()`` switches automine off."""
    node = start_anvil()
    try:
        stack = make_stack("anvil", tmp_path, anvil_url=node.url, delivery_window=3600)
        stack.model = publish_model(stack, write_model(tmp_path / "m"))
        stack.chain.receipt_timeout = 0.5  # a pass waits this long at most for a receipt
        yield stack
    finally:
        node.stop()


def rpc(stack, method: str, *params):
    answer = stack.chain.w3.provider.make_request(method, list(params))
    assert "error" not in answer, answer
    return answer["result"]


def hold(stack) -> None:
    rpc(stack, "evm_setAutomine", False)


def pool(stack) -> dict[int, dict]:
    """The seller's transactions in anvil's pool (pending and queued), by nonce."""
    content = rpc(stack, "txpool_content")
    seller = stack.signers["seller"].address.lower()
    found = {}
    for part in ("pending", "queued"):
        for sender, txs in content[part].items():
            if sender.lower() == seller:
                found.update({int(n): tx for n, tx in txs.items()})
    return found


def mined_by(stack, tx_hash: str) -> int | None:
    receipt = stack.chain.find_receipt(tx_hash)
    return None if receipt is None else receipt["status"]


@pytest.mark.anvil
def test_a_stuck_delivery_and_the_one_behind_it_are_replaced_and_each_delivered_once(
    stuck, tmp_path, caplog
):
    a, b = buy_raw(stuck, "buyer", stuck.model), buy_raw(stuck, "buyer2", stuck.model)
    hold(stuck)
    state = tmp_path / "w.json"
    w = seller_worker(stuck, state, replace_after_s=3600)
    first = w.poll()
    assert sorted(first.pending) == [a, b] and first.delivered == []
    before = pool(stuck)
    assert sorted(tx["hash"] for tx in before.values()) == sorted(first.pending.values())
    assert w.poll().pending == first.pending  # not due yet: waited for, not replaced

    caplog.set_level(logging.INFO, logger="node.worker")
    w.inflight.replace_after_s = 0  # now both are overdue
    second = w.poll()
    assert sorted(second.pending) == [a, b]
    after = pool(stuck)
    assert sorted(after) == sorted(before)  # same nonces: replacements, not new transactions
    for nonce, tx in after.items():
        old = before[nonce]
        assert tx["hash"] in second.pending.values() and tx["hash"] != old["hash"]
        assert int(tx["maxFeePerGas"], 16) * 4 >= int(old["maxFeePerGas"], 16) * 5
        assert int(tx["maxPriorityFeePerGas"], 16) * 4 >= int(old["maxPriorityFeePerGas"], 16) * 5
    for pid in (a, b):
        assert (
            f"purchase {pid}: replaced transaction {first.pending[pid]}" in caplog.text
            and second.pending[pid] in caplog.text
        )
    # Both recorded transactions stay in the state file until one of them is mined.
    doc = json.loads(state.read_text())
    assert [t["tx_hash"] for t in doc["inflight"][str(a)]["txs"]] == [
        first.pending[a],
        second.pending[a],
    ]

    rpc(stuck, "evm_mine")
    third = seller_worker(stuck, state, replace_after_s=3600).poll()
    assert sorted(third.delivered) == [a, b] and third.pending == {}
    assert deliveries(stuck) == {a: 1, b: 1}
    for pid in (a, b):
        assert mined_by(stuck, second.pending[pid]) == 1
        assert mined_by(stuck, first.pending[pid]) is None
    assert can_open(stuck, "buyer", a) and can_open(stuck, "buyer2", b)
    assert json.loads(state.read_text())["inflight"] == {}
    secret = stuck.signers["seller"]._account.key.hex()
    assert secret.removeprefix("0x") not in caplog.text.lower()


@pytest.mark.anvil
def test_a_delivery_evicted_by_a_base_fee_rise_is_replaced_at_the_new_fees(stuck, tmp_path):
    pid = buy_raw(stuck, "buyer", stuck.model)
    hold(stuck)
    state = tmp_path / "w.json"
    first = seller_worker(stuck, state, replace_after_s=3600).poll()
    (tx,) = pool(stuck).values()
    # The next block's base fee is over what the transaction offers: anvil drops it from the pool.
    rpc(stuck, "anvil_setNextBlockBaseFeePerGas", hex(3 * int(tx["maxFeePerGas"], 16)))
    rpc(stuck, "evm_mine")
    assert pool(stuck) == {} and mined_by(stuck, first.pending[pid]) is None
    # Resending the recorded bytes is refused (fees too low): the worker replaces them at once.
    second = seller_worker(stuck, state, replace_after_s=3600).poll()
    (replacement,) = pool(stuck).values()
    assert second.pending == {pid: replacement["hash"]} and replacement["hash"] != tx["hash"]
    base = stuck.chain.get_block("latest")["baseFeePerGas"]
    assert int(replacement["maxFeePerGas"], 16) >= base
    rpc(stuck, "evm_mine")
    assert seller_worker(stuck, state).poll().delivered == [pid]
    assert deliveries(stuck) == {pid: 1} and can_open(stuck, "buyer", pid)


def run_worker(stack, *argv: str, **env_vars: str) -> subprocess.CompletedProcess:
    """``modex worker --once`` as the seller in a subprocess (a SIGKILL ends only it)."""
    env = {**stack.env(), "MODEX_RECEIPT_TIMEOUT": "0.5"}
    env.pop("MODEX_WORKER_CRASH", None)
    env.update(env_vars)
    return subprocess.run(
        stack.modex_cmd("seller", "worker", "--once", *argv),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.anvil
@pytest.mark.parametrize("first_mined", [False, True], ids=["resends-latest", "first-mined"])
def test_a_worker_killed_between_signing_a_replacement_and_sending_it_delivers_once(
    stuck, first_mined
):
    pid = buy_raw(stuck, "buyer", stuck.model)
    hold(stuck)
    state = stuck.data_dir("seller") / f"worker-{stuck.chain.chain_id}.json"  # the CLI's file
    first = seller_worker(stuck, state, replace_after_s=3600).poll()
    tx1 = first.pending[pid]

    killed = run_worker(
        stuck, "--replace-after", "0", MODEX_WORKER_CRASH=f"before_replace_send:{pid}"
    )
    assert killed.returncode == -9, killed.stderr  # SIGKILLed with the replacement recorded
    txs = [t["tx_hash"] for t in json.loads(state.read_text())["inflight"][str(pid)]["txs"]]
    assert len(txs) == 2 and txs[0] == tx1
    tx2 = txs[1]
    assert [t["hash"] for t in pool(stuck).values()] == [tx1]  # the replacement was never sent

    if first_mined:  # the old transaction is mined after all: its receipt counts
        rpc(stuck, "evm_mine")
        resumed = run_worker(stuck)
        assert resumed.returncode == 0, resumed.stderr
        assert mined_by(stuck, tx1) == 1 and mined_by(stuck, tx2) is None
    else:  # the restarted worker sends the latest recorded transaction, not a new one
        resumed = run_worker(stuck)
        assert resumed.returncode == 0, resumed.stderr
        assert f"sent {tx2}, not mined yet" in resumed.stdout, resumed.stdout
        assert [t["hash"] for t in pool(stuck).values()] == [tx2]
        rpc(stuck, "evm_mine")
        assert run_worker(stuck).returncode == 0
        assert mined_by(stuck, tx2) == 1 and mined_by(stuck, tx1) is None
    assert json.loads(state.read_text())["inflight"] == {}
    assert deliveries(stuck) == {pid: 1} and can_open(stuck, "buyer", pid)
    assert run_worker(stuck).returncode == 0 and deliveries(stuck) == {pid: 1}


@pytest.mark.anvil
def test_replacements_never_offer_more_than_the_cap_which_is_logged_once(stuck, tmp_path, caplog):
    pid = buy_raw(stuck, "buyer", stuck.model)
    hold(stuck)
    fee = stuck.chain.fees()["maxFeePerGas"]
    cap = fee * 6 // 5  # room for one replacement (+20%: a node takes +10%), not two
    state = tmp_path / "w.json"
    w = seller_worker(stuck, state, replace_after_s=0, max_fee_per_gas=cap)
    caplog.set_level(logging.INFO, logger="node.worker")
    hashes = [w.poll().pending[pid] for _ in range(4)]
    assert hashes[0] != hashes[1] and hashes[1] == hashes[2] == hashes[3]
    (tx,) = pool(stuck).values()
    assert tx["hash"] == hashes[1] and int(tx["maxFeePerGas"], 16) == cap
    signed = json.loads(state.read_text())["inflight"][str(pid)]["txs"]
    assert len(signed) == 2
    assert all(unsigned_transaction(bytes.fromhex(t["raw"]))["maxFeePerGas"] <= cap for t in signed)
    assert caplog.text.count("it will not be replaced again") == 1
    rpc(stuck, "evm_mine")
    assert w.poll().delivered == [pid] and deliveries(stuck) == {pid: 1}


@pytest.mark.anvil
def test_a_new_delivery_offers_at_most_the_cap(stuck, tmp_path, caplog):
    pid = buy_raw(stuck, "buyer", stuck.model)
    hold(stuck)
    fees = stuck.chain.fees()
    cap = (fees["maxFeePerGas"] + stuck.chain.get_block("latest")["baseFeePerGas"]) // 2
    report = seller_worker(stuck, tmp_path / "w.json", max_fee_per_gas=cap).poll()
    (tx,) = pool(stuck).values()
    assert tx["hash"] == report.pending[pid] and int(tx["maxFeePerGas"], 16) == cap
    assert "over the cap" in caplog.text
    rpc(stuck, "evm_mine")
    assert seller_worker(stuck, tmp_path / "w.json").poll().delivered == [pid]


@pytest.mark.anvil
def test_an_in_flight_entry_of_the_older_state_format_is_migrated_and_replaced(stuck, tmp_path):
    pid = buy_raw(stuck, "buyer", stuck.model)
    hold(stuck)
    state = tmp_path / "w.json"
    old = seller_worker(stuck, state, replace_after_s=3600).poll().pending[pid]
    doc = json.loads(state.read_text())
    (signed,) = doc["inflight"][str(pid)]["txs"]
    doc["inflight"][str(pid)] = {"tx_hash": signed["tx_hash"], "raw": signed["raw"]}  # as before
    state.write_text(json.dumps(doc))
    # Its age is unknown: the default replacement time does not hold it back.
    report = seller_worker(stuck, state).poll()
    new = report.pending[pid]
    assert new != old and [t["hash"] for t in pool(stuck).values()] == [new]
    entry = json.loads(state.read_text())["inflight"][str(pid)]
    assert [t["tx_hash"] for t in entry["txs"]] == [old, new] and "tx_hash" not in entry
    rpc(stuck, "evm_mine")
    assert seller_worker(stuck, state).poll().delivered == [pid]
    assert deliveries(stuck) == {pid: 1} and mined_by(stuck, new) == 1


@pytest.mark.parametrize(
    "fees", [{"gasPrice": 7 * GWEI}, {"maxFeePerGas": 9 * GWEI, "maxPriorityFeePerGas": GWEI}]
)
def test_a_signed_transaction_is_read_back_and_its_replacement_fees_obey_the_cap(fees):
    tx = {
        "chainId": 31337,
        "nonce": 5,
        "to": dev_signer("anvil", 2).address,
        "value": 0,
        "data": "0x" + bytes(range(40)).hex(),
        "gas": 90_000,
        **fees,
    }
    signer = dev_signer("anvil", 1)
    decoded = unsigned_transaction(signer.sign_transaction(tx))
    assert {k: decoded[k] for k in tx} == tx  # legacy (gasPrice) and EIP-1559 alike
    assert signer.sign_transaction(decoded) == signer.sign_transaction(tx)
    key = "gasPrice" if "gasPrice" in fees else "maxFeePerGas"
    bumped = replacement_fees(decoded, {}, cap=100 * GWEI)
    assert all(bumped[k] * 4 >= fees[k] * 5 for k in fees)  # +25% on every field
    # The node's current fees win when higher; the cap wins over both.
    assert replacement_fees(decoded, {key: 50 * GWEI}, cap=100 * GWEI)[key] == 50 * GWEI
    assert replacement_fees(decoded, {key: 50 * GWEI}, cap=fees[key] * 23 // 20)[key] == (
        fees[key] * 23 // 20
    )
    assert replacement_fees(decoded, {}, cap=fees[key] * 21 // 20) is None  # +5%: no node takes it
