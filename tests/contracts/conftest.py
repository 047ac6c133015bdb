"""Fixtures for the contract tests: the suite deployed once per chain kind ("embedded" py-evm, "anvil"),
reset between tests by snapshot/revert, plus helpers to send, decode events and travel in time."""

from __future__ import annotations

import pytest
from web3 import Web3
from web3.logs import DISCARD

from node import paths
from node.compiler import compile_contracts
from node.deploy import deploy_suite, suite_contracts
from node.errors import ContractRevert
from node.revert import decoded_reverts

HOSTILE_DIR = paths.ROOT / "tests" / "contracts" / "hostile"
CID_V1 = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
MODEL_HASH = bytes.fromhex("11" * 32)
BUYER_KEY = bytes.fromhex("22" * 32)
WRAPPED = bytes(range(80))
PRICE = 10**17
PARAMS = {"fee_bps": 250, "delivery_window": 3600, "validator_share_bps": 2000, "min_stake": 10**17, "quorum": 2,
              "unstake_delay": 86400, "slash_bps": 5000}


class Chain:
    """One chain with the suite deployed; every test starts from the same snapshot."""

    def __init__(self, w3: Web3, kind: str, artifacts: dict):
        self.w3, self.kind, self.artifacts = w3, kind, artifacts
        self.accounts = list(w3.eth.accounts)
        self.deployer = self.accounts[0]
        self.fee_recipient = self.accounts[9]
        self.record = deploy_suite(w3, self.deployer, artifacts=artifacts, fee_recipient=self.fee_recipient,
                                   **PARAMS)
        c = suite_contracts(w3, self.record, artifacts)
        self.registry, self.market = c["ModelRegistry"], c["Marketplace"]
        self.votes, self.validators = c["Votes"], c["Validators"]

    # transactions -------------------------------------------------------------------------------
    def send(self, fn, sender, value: int = 0, gas: int | None = None):
        """Send and mine; a revert raises the decoded ContractRevert."""
        tx = {"from": sender, "value": value}
        if gas:
            tx["gas"] = gas
        with decoded_reverts():
            tx_hash = fn.transact(tx)
        # dev chains mine at once; web3's default 0.1 s polling would dominate the test time
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.002)
        assert receipt["status"] == 1, receipt
        return receipt

    def expect_revert(self, fn, sender, error: str, value: int = 0, **args):
        """Send ``fn`` expecting the custom error ``error`` with (a subset of) ``args``; return it."""
        with pytest.raises(ContractRevert) as info:
            self.send(fn, sender, value=value)
        got = info.value.context
        assert got["error"] == error, f"expected {error}, got {got['error']}: {info.value}"
        for key, expected in args.items():
            assert got["args"][key] == expected, (key, got["args"])
        assert "unknown error data" not in str(info.value)
        return info.value

    def events(self, receipt, contract, name: str) -> list[dict]:
        return [dict(e["args"]) for e in contract.events[name]().process_receipt(receipt, errors=DISCARD)]

    def gas_cost(self, receipt) -> int:
        return receipt["gasUsed"] * receipt["effectiveGasPrice"]

    def balance(self, address) -> int:
        return self.w3.eth.get_balance(address)

    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    # time and state -----------------------------------------------------------------------------
    def travel(self, seconds: int) -> None:
        if self.kind == "anvil":
            self.w3.provider.make_request("evm_increaseTime", [seconds])
            self.w3.provider.make_request("evm_mine", [])
        else:
            tester = self.w3.provider.ethereum_tester
            tester.time_travel(self.now() + seconds)
            tester.mine_blocks()

    def snapshot(self):
        if self.kind == "anvil":
            return self.w3.provider.make_request("evm_snapshot", [])["result"]
        return self.w3.provider.ethereum_tester.take_snapshot()

    def revert(self, snap) -> None:
        if self.kind == "anvil":
            assert self.w3.provider.make_request("evm_revert", [snap])["result"] is True
        else:
            self.w3.provider.ethereum_tester.revert_to_snapshot(snap)

    # common journeys ----------------------------------------------------------------------------
    def list_model(self, seller, price: int = PRICE, cid: str = CID_V1, model_hash: bytes = MODEL_HASH) -> int:
        receipt = self.send(self.registry.functions.list(model_hash, cid, price), seller)
        return self.events(receipt, self.registry, "ModelListed")[0]["modelId"]

    def buy(self, buyer, model_id: int, price: int = PRICE) -> int:
        receipt = self.send(self.market.functions.buy(model_id, BUYER_KEY, price), buyer, value=price)
        return self.events(receipt, self.market, "Purchased")[0]["purchaseId"]

    def deliver(self, seller, purchase_id: int):
        return self.send(self.market.functions.deliverKey(purchase_id, WRAPPED), seller)

    def stake(self, validator, amount: int = PARAMS["min_stake"]):
        return self.send(self.validators.functions.stake(), validator, value=amount)

    def deploy(self, name: str, *args):
        art = self.artifacts[name]
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = self.send(factory.constructor(*args), self.deployer)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])


@pytest.fixture(scope="session")
def artifacts():
    """The suite and the hostile test contracts compiled together (cached under build/)."""
    return compile_contracts([paths.CONTRACTS_DIR, HOSTILE_DIR], build_dir=paths.BUILD_DIR / "contracts-test")


@pytest.fixture(scope="session")
def embedded_chain(artifacts):
    from web3 import EthereumTesterProvider

    return Chain(Web3(EthereumTesterProvider()), "embedded", artifacts)


@pytest.fixture(scope="session")
def anvil_chain(anvil, artifacts):
    return Chain(Web3(Web3.HTTPProvider(anvil.url)), "anvil", artifacts)


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def chain(request):
    """The deployed suite on each chain kind, reset to its freshly deployed state after the test."""
    c = request.getfixturevalue(f"{request.param}_chain")
    snap = c.snapshot()
    yield c
    c.revert(snap)
