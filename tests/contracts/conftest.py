"""Fixtures for the contract tests: the suite deployed once per chain kind ("embedded" py-evm, "anvil"),
reset between tests by snapshot/revert, plus helpers to send, decode events, travel in time and play
the validation protocol (key request → delivery → commit → reveal → settle → release)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from eth_account import Account
from web3 import EthereumTesterProvider, Web3
from web3.logs import DISCARD

from node import paths
from node.compiler import compile_contracts
from node.deploy import deploy_suite, suite_contracts
from node.errors import ContractRevert
from node.protocol import ModelStatus, Purchase, Round, Seat, StakeInfo, attestation_commitment
from node.revert import decoded_reverts

HOSTILE_DIR = paths.ROOT / "tests" / "contracts" / "hostile"
CID_V1 = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
MODEL_HASH = bytes.fromhex("11" * 32)
CLAIM = bytes.fromhex("33" * 32)  # the seller's claimed work digest in these tests
BAD_HASH = bytes.fromhex(
    "99" * 32
)  # what a validator reports when the content is not the listed model
BUYER_KEY = bytes.fromhex("22" * 32)
WRAPPED = bytes(range(80))
PRICE = 10**17
ETH = "0x" + "00" * 20  # the token address that stands for ETH (prices, credits, withdraw)
# The tests' suite: quorum 2 (so a majority needs more than one validator) and short rounds.
PARAMS = {
    "fee_bps": 250,
    "delivery_window": 3600,
    "challenge_period": 600,
    "validator_share_bps": 2000,
    "min_stake": 10**17,
    "quorum": 2,
    "commit_period": 60,
    "reveal_period": 60,
    "unstake_delay": 86400,
    "bond_bps": 2000,
    "request_bond": 10**16,
    "max_open_requests": 4,
}


class Chain:
    """One chain with the suite deployed; every test starts from the same snapshot."""

    def __init__(self, w3: Web3, kind: str, artifacts: dict, params: dict | None = None):
        self.w3, self.kind, self.artifacts = w3, kind, artifacts
        # None stands for the deployment's default (node.deploy: the fee recipient, the treasury)
        self.params = {k: v for k, v in {**PARAMS, **(params or {})}.items() if v is not None}
        self.accounts = list(w3.eth.accounts)[:10]
        self.deployer = self.accounts[0]
        self.fee_recipient = self.accounts[9]
        self.record = deploy_suite(
            w3,
            self.deployer,
            artifacts=artifacts,
            **{"fee_recipient": self.fee_recipient, **self.params},
        )
        self.fee_recipient = self.record["params"]["fee_recipient"]
        self.treasury = self.record["params"]["treasury"]
        c = suite_contracts(w3, self.record, artifacts)
        self.registry, self.market = c["ModelRegistry"], c["Marketplace"]
        self.votes, self.validators = c["Votes"], c["Validators"]

    def variant(self, **overrides) -> Chain:
        """Another suite on the same chain (inside the test's snapshot) with some parameters changed."""
        return Chain(self.w3, self.kind, self.artifacts, {**self.params, **overrides})

    # transactions -------------------------------------------------------------------------------
    def send(self, fn, sender, value: int = 0, gas: int | None = None):
        """Send and mine; a revert raises the decoded ContractRevert."""
        tx = {"from": sender, "value": value}
        with decoded_reverts():
            if gas or self.kind == "anvil":
                # anvil estimates on the latest block's time by default: the pending block's is the one
                # `at` may have set (eth-tester estimates on the pending block, and takes no block here)
                tx["gas"] = gas or fn.estimate_gas(tx, block_identifier="pending")
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

    def expect_revert_with(self, fn, sender, error: str, args: tuple, value: int = 0):
        """``expect_revert`` checking every argument of the error, in the order it declares them."""
        err = self.expect_revert(fn, sender, error, value=value)
        assert tuple(err.context["args"].values()) == args, (error, err.context["args"])
        return err

    def events(self, receipt, contract, name: str) -> list[dict]:
        return [
            dict(e["args"])
            for e in contract.events[name]().process_receipt(receipt, errors=DISCARD)
        ]

    def gas_cost(self, receipt) -> int:
        return receipt["gasUsed"] * receipt["effectiveGasPrice"]

    def balance(self, address) -> int:
        return self.w3.eth.get_balance(address)

    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    def new_account(self, eth: int = 1000) -> str:
        """A never-used account holding ``eth`` ETH that ``send`` can sign for (a fresh, cold address)."""
        return self.new_local_account(eth).address

    def new_local_account(self, eth: int = 1000):
        """``new_account``'s eth-account (its key signs typed data, e.g. an EIP-2612 permit)."""
        account = Account.from_key(os.urandom(32))
        if self.kind == "anvil":
            self.w3.provider.make_request("anvil_impersonateAccount", [account.address])
            self.w3.provider.make_request("anvil_setBalance", [account.address, hex(eth * 10**18)])
        else:
            self.w3.provider.ethereum_tester.add_account(account.key.to_0x_hex())
            self.w3.eth.send_transaction(
                {"from": self.deployer, "to": account.address, "value": eth * 10**18}
            )
        return account

    # time and state -----------------------------------------------------------------------------
    def travel(self, seconds: int) -> None:
        if self.kind == "anvil":
            self.w3.provider.make_request("evm_increaseTime", [seconds])
            self.w3.provider.make_request("evm_mine", [])
        else:
            tester = self.w3.provider.ethereum_tester
            tester.time_travel(self.now() + seconds)
            tester.mine_blocks()

    def at(self, timestamp: int) -> None:
        """Mine the next block (the next transaction) at exactly ``timestamp`` (later than now)."""
        if self.kind == "anvil":
            self.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])
        else:
            self.w3.provider.ethereum_tester.time_travel(timestamp)

    def travel_to(self, timestamp: int) -> None:
        """Mine an empty block at ``timestamp`` or, when that has passed, one second after now."""
        self.at(max(timestamp, self.now() + 1))
        self.mine()

    def mine(self) -> None:
        """Mine an empty block (at the timestamp `at` set, if any)."""
        if self.kind == "anvil":
            self.w3.provider.make_request("evm_mine", [])
        else:
            self.w3.provider.ethereum_tester.mine_blocks()

    def snapshot(self):
        if self.kind == "anvil":
            return self.w3.provider.make_request("evm_snapshot", [])["result"]
        return self.w3.provider.ethereum_tester.take_snapshot()

    def revert(self, snap) -> None:
        if self.kind == "anvil":
            assert self.w3.provider.make_request("evm_revert", [snap])["result"] is True
        else:
            self.w3.provider.ethereum_tester.revert_to_snapshot(snap)

    # typed views (node.protocol's records) -------------------------------------------------------
    def purchase(self, purchase_id: int) -> Purchase:
        return Purchase.from_call(self.market.functions.purchase(purchase_id).call())

    def seat(self, model_id: int, validator) -> Seat:
        return Seat.from_call(self.validators.functions.attestationOf(model_id, validator).call())

    def stake_of(self, validator) -> StakeInfo:
        return StakeInfo.from_call(self.validators.functions.stakeOf(validator).call())

    def round_of(self, model_id: int) -> Round:
        return Round.from_call(self.validators.functions.roundOf(model_id).call())

    def status(self, model_id: int) -> ModelStatus:
        return ModelStatus(self.validators.functions.status(model_id).call())

    # sales ----------------------------------------------------------------------------------------
    def list_model(
        self,
        seller,
        price: int = PRICE,
        cid: str = CID_V1,
        model_hash: bytes = MODEL_HASH,
        claim: bytes | None = CLAIM,
    ) -> int:
        """List a model and (unless ``claim`` is None) record the seller's work digest right after."""
        receipt = self.send(self.registry.functions.list(model_hash, cid, price), seller)
        model_id = self.events(receipt, self.registry, "ModelListed")[0]["modelId"]
        if claim is not None:
            self.send(self.registry.functions.claimMetrics(model_id, claim), seller)
        return model_id

    def buy(self, buyer, model_id: int, price: int = PRICE) -> int:
        receipt = self.send(
            self.market.functions.buy(model_id, BUYER_KEY, price), buyer, value=price
        )
        return self.events(receipt, self.market, "Purchased")[0]["purchaseId"]

    def token_model(self, seller, token, price: int = PRICE) -> int:
        """A model listed by ``seller`` and priced in the ERC-20 ``token``."""
        model_id = self.list_model(seller, price)
        self.send(self.registry.functions.setPaymentToken(model_id, token.address), seller)
        return model_id

    def fund(self, token, account, amount: int = 10 * PRICE) -> None:
        """Mint ``amount`` of ``token`` to ``account`` and let the Marketplace pull all of it."""
        self.send(token.functions.mint(account, amount), self.deployer)
        self.send(token.functions.approve(self.market.address, amount), account)

    def buy_with_token(self, buyer, model_id: int, price: int = PRICE) -> int:
        """``buy`` of a model priced in an ERC-20 the buyer approved: no ETH sent."""
        receipt = self.send(self.market.functions.buy(model_id, BUYER_KEY, price), buyer)
        return self.events(receipt, self.market, "Purchased")[0]["purchaseId"]

    def buy_refused(self, buyer, model_id: int, error: str, price: int = PRICE, **args):
        """``buy`` as above, expecting the custom error ``error`` with (a subset of) ``args``."""
        call = self.market.functions.buy(model_id, BUYER_KEY, price)
        return self.expect_revert(call, buyer, error, value=price, **args)

    def deliver(self, seller, purchase_id: int):
        """deliverKey to the purchase's own buyer (as the worker does: it wraps for that account)."""
        buyer = self.purchase(purchase_id).account
        return self.send(self.market.functions.deliverKey(purchase_id, buyer, WRAPPED), seller)

    def release_revenue(self, purchase_id: int, caller=None):
        """Wait out the purchase's challenge period and release its revenue (anyone may)."""
        self.travel_to(
            self.purchase(purchase_id).delivered_at + self.params["challenge_period"] + 1
        )
        return self.send(
            self.market.functions.releaseRevenue(purchase_id), caller or self.accounts[8]
        )

    # validation -----------------------------------------------------------------------------------
    def stake(self, validator, amount: int | None = None):
        return self.send(
            self.validators.functions.stake(), validator, value=amount or self.params["min_stake"]
        )

    def stake_if_needed(self, validators) -> None:
        for v in validators:
            if not self.validators.functions.isActiveValidator(v).call():
                self.stake(v)

    def request_key(self, validator, model_id: int) -> int:
        receipt = self.send(
            self.market.functions.requestValidatorKey(model_id, BUYER_KEY), validator
        )
        return self.events(receipt, self.market, "Purchased")[0]["purchaseId"]

    def key(self, validator, model_id: int, seller=None) -> int:
        """The validator asks for the model's key and the model's owner delivers it."""
        purchase_id = self.request_key(validator, model_id)
        self.deliver(seller or self.registry.functions.ownerOf(model_id).call(), purchase_id)
        return purchase_id

    def commitment(
        self, model_id: int, validator, observed: bytes, digest: bytes, salt: bytes
    ) -> bytes:
        return attestation_commitment(
            self.w3.eth.chain_id,
            self.validators.address,
            model_id,
            validator,
            observed,
            digest,
            salt,
        )

    def commit(
        self, validator, model_id: int, observed: bytes, digest: bytes, salt: bytes | None = None
    ):
        """Commit to (observed, digest); returns the receipt and the salt to reveal with."""
        salt = salt or os.urandom(32)
        commitment = self.commitment(model_id, validator, observed, digest, salt)
        return self.send(
            self.validators.functions.commitAttestation(model_id, commitment), validator
        ), salt

    def reveal(self, validator, model_id: int, observed: bytes, digest: bytes, salt: bytes):
        return self.send(
            self.validators.functions.revealAttestation(model_id, observed, digest, salt), validator
        )

    def to_reveals(self, model_id: int) -> None:
        self.travel_to(self.round_of(model_id).commit_end + 1)

    def to_settlement(self, model_id: int) -> None:
        self.travel_to(self.round_of(model_id).reveal_end + 1)

    def settle(self, model_id: int, caller=None):
        return self.send(self.validators.functions.settle(model_id), caller or self.accounts[8])

    def release(self, model_id: int, validator, caller=None):
        """Validators.release of the seat; returns the SeatReleased event."""
        receipt = self.send(
            self.validators.functions.release(model_id, validator), caller or self.accounts[8]
        )
        (event,) = self.events(receipt, self.validators, "SeatReleased")
        return event

    def round(self, model_id: int, says: dict, *, keyed: bool = False):
        """Play one whole round: every validator in ``says`` ({validator: (observed, digest)}) gets the key
        (unless ``keyed``), commits, and reveals; then the round is settled. Returns settle's receipt."""
        if not keyed:
            for validator in says:
                self.key(validator, model_id)
        salts = {v: self.commit(v, model_id, *attestation)[1] for v, attestation in says.items()}
        self.to_reveals(model_id)
        for validator, attestation in says.items():
            self.reveal(validator, model_id, *attestation, salts[validator])
        self.to_settlement(model_id)
        return self.settle(model_id)

    def verified_by(self, model_id: int, validators) -> None:
        """Stake ``validators`` and have them verify the model (its listed hash and the seller's claim)."""
        target = self.target(model_id)
        self.stake_if_needed(validators)
        self.round(model_id, dict.fromkeys(validators, target))
        assert self.status(model_id) == ModelStatus.VERIFIED

    def disputed_by(self, model_id: int, validators, observed: bytes = BAD_HASH) -> None:
        """Stake ``validators`` and have them report another hash: the model is Disputed."""
        self.stake_if_needed(validators)
        self.round(model_id, dict.fromkeys(validators, (observed, CLAIM)))
        assert self.status(model_id) == ModelStatus.DISPUTED

    def target(self, model_id: int) -> tuple[bytes, bytes]:
        """(listed hash, claimed work digest): what an honest validator of a good model reveals."""
        model_hash, digest, _claimed_at = self.registry.functions.attestationTarget(model_id).call()
        return model_hash, digest

    def deploy(self, name: str, *args):
        art = self.artifacts[name]
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = self.send(factory.constructor(*args), self.deployer)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])


def fee_split(price: int, fee_bps: int = PARAMS["fee_bps"]) -> tuple[int, int]:
    """(the owner's part, the fee) of a released sale."""
    fee = price * fee_bps // 10_000
    return price - fee, fee


def seat_bonds(chain: Chain, weight: int = 1) -> SimpleNamespace:
    """The request bond and the commit bond of a seat of ``weight``, from the chain's parameters."""
    p = chain.params
    return SimpleNamespace(
        request=p["request_bond"], commit=weight * p["min_stake"] * p["bond_bps"] // 10_000
    )


@pytest.fixture(scope="session")
def artifacts():
    """The suite and the hostile test contracts compiled together (cached under build/)."""
    return compile_contracts(
        [paths.CONTRACTS_DIR, HOSTILE_DIR], build_dir=paths.BUILD_DIR / "contracts-test"
    )


@pytest.fixture(scope="session")
def embedded_chain(artifacts):
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
    c.mine()  # uses up a timestamp `at` set for a block the test never mined
    c.revert(snap)
