"""node/chain.py: connect, transact (pre-flight, nonce, fees, receipts), retries, deployment checks.

The transaction path is exercised against a tiny contract of our own (compiled from a temp folder
with node.compiler), on the embedded chain and on anvil.
"""

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from node import paths
from node.chain import Chain, connect, embedded_web3, load_deployment_file
from node.compiler import compile_contracts
from node.config import Config
from node.errors import ChainError, ConfigError, ContractRevert, InputError
from node.signer import LocalSigner, dev_signer

COUNTER = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
/// @notice A test contract for the chain client: a counter with a custom error and an event.
contract Counter {
    error CounterTooBig(uint256 value, uint256 limit);
    event Bumped(address indexed by, uint256 value);
    uint256 public count;
    function bump(uint256 by) external payable {
        if (count + by > 100) revert CounterTooBig(count + by, 100);
        count += by;
        emit Bumped(msg.sender, count);
    }
    function burn(uint256 rounds) external {
        for (uint256 i; i < rounds; i++) count = count + 1 - 1;
    }
}
"""


@pytest.fixture(scope="module")
def counter_artifacts():
    # node.compiler names sources relative to the repository, so the temp folder lives inside it.
    tmp = Path(tempfile.mkdtemp(prefix="chain-test-", dir=paths.BUILD_DIR))
    try:
        (tmp / "src").mkdir()
        (tmp / "src" / "Counter.sol").write_text(COUNTER)
        yield compile_contracts([tmp / "src"], build_dir=tmp / "out")
    finally:
        shutil.rmtree(tmp)


def deploy_counter(w3: Web3, artifacts, deployer: str) -> Chain:
    art = artifacts["Counter"]
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx_hash = factory.constructor().transact({"from": deployer})
    address = w3.eth.wait_for_transaction_receipt(tx_hash)["contractAddress"]
    record = {"chainId": w3.eth.chain_id, "contracts": {"Counter": {"address": address}}}
    return Chain(w3, record, abis=artifacts, retries=1, backoff=0.01)


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def setup(request, counter_artifacts):
    if request.param == "embedded":
        w3 = embedded_web3()
        kind = "embedded"
    else:
        w3 = connect(request.getfixturevalue("anvil").url)
        kind = "anvil"
    signer = dev_signer(kind, 1)
    chain = deploy_counter(w3, counter_artifacts, w3.eth.accounts[0])
    return chain, signer, kind


def test_connect_embedded_is_one_chain_per_process():
    assert connect("embedded") is connect(Config(chain="embedded")) is embedded_web3()
    with pytest.raises(ConfigError):
        connect("ws://localhost:1")


def test_transact_signs_sends_and_returns_receipt(setup):
    chain, signer, _ = setup
    counter = chain.contracts["Counter"]
    before = chain.call(counter.functions.count())
    seen = []
    receipt = chain.transact(counter.functions.bump(3), signer, value=5, on_sent=seen.append)
    assert receipt["status"] == 1 and seen == [receipt["transactionHash"]]
    assert chain.call(counter.functions.count()) == before + 3
    assert chain.balance(counter.address) >= 5
    events = chain.events("Bumped", receipt["blockNumber"], receipt["blockNumber"])
    assert [(e["args"]["by"], e["args"]["value"]) for e in events] == [(signer.address, before + 3)]
    tx = chain.w3.eth.get_transaction(receipt["transactionHash"])
    assert tx["type"] == 2 and tx["from"] == signer.address  # EIP-1559 fees


def test_events_of_a_name_no_contract_declares_is_bad_input(setup):
    chain, _, _ = setup
    with pytest.raises(InputError, match="no Modex contract declares an event named 'Bumpd'"):
        chain.events("Bumpd", 0)


def test_nonces_stay_consistent_under_threads(setup):
    chain, signer, _ = setup
    counter = chain.contracts["Counter"]
    start = chain.w3.eth.get_transaction_count(signer.address)
    errors = []

    def bump():
        try:
            chain.transact(counter.functions.bump(0), signer)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert chain.w3.eth.get_transaction_count(signer.address) == start + 6


def test_revert_is_decoded_before_anything_is_sent(setup):
    chain, signer, _ = setup
    counter = chain.contracts["Counter"]
    nonce = chain.w3.eth.get_transaction_count(signer.address)
    count = chain.call(counter.functions.count())
    with pytest.raises(ContractRevert) as info:
        chain.transact(counter.functions.bump(1000), signer)
    assert info.value.context["error"] == "CounterTooBig"
    assert info.value.context["args"] == {"value": count + 1000, "limit": 100}
    assert "CounterTooBig" in str(info.value)
    assert chain.w3.eth.get_transaction_count(signer.address) == nonce  # nothing sent


def test_out_of_gas_is_caught_by_the_dry_run(setup):
    chain, signer, _ = setup
    counter = chain.contracts["Counter"]
    nonce = chain.w3.eth.get_transaction_count(signer.address)
    with pytest.raises(ContractRevert, match="burn would run out of gas"):
        chain.transact(counter.functions.burn(2000), signer, gas=60_000)
    assert chain.w3.eth.get_transaction_count(signer.address) == nonce


def send_without_dry_run(chain, signer, fn, gas):
    tx = fn.build_transaction(
        {
            "from": signer.address,
            "gas": gas,
            "chainId": chain.chain_id,
            "nonce": chain.w3.eth.get_transaction_count(signer.address),
            **chain.fees(),
        }
    )
    return tx, chain.send_raw(signer.sign_transaction(tx))


def test_failed_receipt_becomes_contract_revert(setup):
    chain, signer, _ = setup
    counter = chain.contracts["Counter"]
    # Skip the dry run on purpose (as if the state changed after it): the receipt has status 0.
    tx, tx_hash = send_without_dry_run(chain, signer, counter.functions.burn(2000), 60_000)
    with pytest.raises(ContractRevert, match="reverted in block .*gas used .* of 60000") as info:
        chain.wait_receipt(tx_hash, fn=counter.functions.burn, tx=tx)
    assert info.value.context["tx_hash"] == "0x" + tx_hash.hex()
    # Sending the same signed bytes again is recognised, not a second transaction.
    assert chain.send_raw(signer.sign_transaction(tx)) == tx_hash


def test_custom_error_in_a_mined_transaction_is_decoded(setup):
    chain, signer, _ = setup
    counter = chain.contracts["Counter"]
    tx, tx_hash = send_without_dry_run(chain, signer, counter.functions.bump(1000), 100_000)
    with pytest.raises(ContractRevert) as info:
        chain.wait_receipt(tx_hash, fn=counter.functions.bump, tx=tx)
    assert info.value.context["error"] == "CounterTooBig"
    assert info.value.context["args"]["limit"] == 100


def test_insufficient_funds_is_a_clear_error(setup):
    chain, _, _ = setup
    broke = LocalSigner(Account.create())
    counter = chain.contracts["Counter"]
    with pytest.raises(ChainError, match="insufficient funds.*nothing was sent"):
        chain.transact(counter.functions.bump(1), broke, value=10**18)


def test_transact_unlocked_with_node_account(setup):
    chain, _, _ = setup
    counter = chain.contracts["Counter"]
    receipt = chain.transact_unlocked(counter.functions.bump(1), chain.w3.eth.accounts[2])
    assert receipt["status"] == 1
    assert (
        chain.w3.eth.get_transaction(receipt["transactionHash"])["from"] == chain.w3.eth.accounts[2]
    )


def test_wait_for_and_timeout(setup):
    chain, _, _ = setup
    ticks = iter(range(100))
    assert chain.wait_for(lambda: next(ticks) >= 2, timeout=5, interval=0.01)
    with pytest.raises(ChainError, match="never not reached within 0.1 s"):
        chain.wait_for(lambda: False, timeout=0.1, interval=0.01, what="never")


def test_unreachable_node_bounded_retries_name_the_endpoint(counter_artifacts):
    from node.devchain import free_port

    url = f"http://127.0.0.1:{free_port()}"
    record = {"chainId": 1, "contracts": {"Counter": {"address": "0x" + "12" * 20}}}
    chain = Chain(
        connect(url, timeout=0.5), record, abis=counter_artifacts, retries=2, backoff=0.05
    )
    started = time.monotonic()
    with pytest.raises(ChainError, match=f"cannot reach the chain node at {url}.*3 times"):
        chain.block_number()
    assert time.monotonic() - started < 5


def test_deployment_file_checks(tmp_path):
    path = tmp_path / "31337.json"
    with pytest.raises(ConfigError, match="no deployment for chain 31337.*deploy"):
        load_deployment_file(path, 31337, "http://x")
    path.write_text(json.dumps({"chainId": 1, "contracts": {}}))
    with pytest.raises(ConfigError, match="is for chain 1 but the node at http://x is chain 31337"):
        load_deployment_file(path, 31337, "http://x")
    path.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_deployment_file(path, 31337, "http://x")


def test_from_config_refuses_wrong_chain_and_stale_records(tmp_path, counter_artifacts):
    w3 = embedded_web3()
    chain_id = w3.eth.chain_id
    config = Config(data_dir=tmp_path, chain="embedded", chain_id=chain_id + 1)
    with pytest.raises(
        ConfigError,
        match=f"expects chain {chain_id + 1} but the node at embedded is chain {chain_id}",
    ):
        Chain.from_config(config)
    stale = {
        "chainId": chain_id,
        "contracts": {
            name: {"address": "0x" + f"{i + 1:02x}" * 20}
            for i, name in enumerate(("ModelRegistry", "Marketplace", "Votes", "Validators"))
        },
    }
    path = tmp_path / "d.json"
    path.write_text(json.dumps(stale))
    abis = {name: counter_artifacts["Counter"]["abi"] for name in stale["contracts"]}
    config = Config(data_dir=tmp_path, chain="embedded", deployment_file=path)
    with pytest.raises(ConfigError, match="no contract at .*stale"):
        Chain.from_config(config, abis=abis)
