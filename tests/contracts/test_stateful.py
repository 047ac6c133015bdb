"""Random call sequences against the suite on anvil, checked against a Python model of the money.

Deployment happens once; every example starts from an evm_snapshot (two models listed) and is rolled
back with evm_revert, so an example costs only its own transactions. The issue asks for at least 2,000
sequences per CI run, so that is the default (MODEX_STATEFUL_EXAMPLES overrides it for local runs).

What made it affordable (profiled with cProfile: 20 sequences took 29 s through web3, 51 % of it
eth_calls of the end-of-example check, 25 % transact = estimate_gas + send + receipt polling):
- transactions go straight to anvil as one ``eth_sendTransactionSync`` (EIP-7966: mined, receipt
  returned) with explicit gas over one kept-alive HTTP connection; only a reverted one pays a second
  round trip (``eth_call`` of the same transaction) to fetch the custom error, decoded by node/revert.py;
- every invariant is checked after EVERY step from ONE ``eth_call`` to a read-only test contract
  (tests/contracts/hostile/Lens.sol) that returns all balances, credits, stakes, purchase statuses,
  scores, votes, licences, tallies and rewards as one array.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import time
from typing import ClassVar
from urllib.parse import urlparse

import pytest
from conftest import BUYER_KEY, PARAMS, WRAPPED
from eth_abi import decode, encode
from eth_utils import function_abi_to_4byte_selector
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from node.revert import decode_revert

EXAMPLES = int(os.environ.get("MODEX_STATEFUL_EXAMPLES", "2000"))
STEPS = 12  # hypothesis draws each sequence's length up to this
WINDOW = PARAMS["delivery_window"]
DELAY = PARAMS["unstake_delay"]
QUORUM = PARAMS["quorum"]
FEE_BPS, SHARE_BPS, MIN, SLASH_BPS = (PARAMS["fee_bps"], PARAMS["validator_share_bps"], PARAMS["min_stake"],
                                      PARAMS["slash_bps"])
PRICES = [0, 10**15, 10**17, 3 * 10**17]
MODELS = (1, 2)
GAS = 600_000
BAD_HASH = b"\x99" * 32

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


class Rpc:
    """JSON-RPC over one kept-alive HTTP connection, without web3's per-call middleware."""

    def __init__(self, url: str):
        u = urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        self.ids = itertools.count(1)

    def raw(self, method: str, params: list) -> dict:
        body = json.dumps({"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params})
        self.conn.request("POST", "/", body, {"Content-Type": "application/json"})
        return json.loads(self.conn.getresponse().read())

    def __call__(self, method: str, params: list):
        reply = self.raw(method, params)
        if "error" in reply:
            raise AssertionError(f"{method} failed: {reply['error']}")
        return reply["result"]


_ENCODERS: dict = {}


def calldata(contract, fn: str, args: list) -> str:
    """ABI-encode a call (web3's Contract.encode_abi validates the whole ABI each time: ~15 ms a call)."""
    key = (contract.address, fn)
    if key not in _ENCODERS:
        (entry,) = [e for e in contract.abi if e.get("type") == "function" and e["name"] == fn]
        _ENCODERS[key] = (function_abi_to_4byte_selector(entry), [i["type"] for i in entry["inputs"]])
    selector, types = _ENCODERS[key]
    return "0x" + (selector + encode(types, args)).hex()


class SuiteMachine(RuleBasedStateMachine):
    chain = rpc = lens = None  # set by the test
    runs = 0  # examples started (checked against max_examples by the test)
    # steps on a disputed model's pending purchase (checked by the test: the rule is really exercised)
    disputed_steps: ClassVar[dict[str, int]] = {"deliverKey": 0, "refund before the deadline": 0}

    @initialize()
    def start(self):
        type(self).runs += 1
        c = self.chain
        self.snap = self.rpc("evm_snapshot", [])
        a = c.accounts
        self.sellers, self.buyers, self.vals = a[1:3], a[3:6], a[6:9]
        self.fee_recipient = self.treasury = c.fee_recipient  # the treasury defaults to the fee recipient
        self.everyone = a[1:10]
        self.owner = {1: a[1], 2: a[2]}
        self.price = {1: 10**17, 2: 0}
        self.credited = dict.fromkeys(self.everyone, 0)  # Marketplace
        self.vcredited = dict.fromkeys(self.everyone, 0)  # Validators (the treasury's slashed stake)
        self.earned = dict.fromkeys(self.everyone, 0)  # everything ever credited, both contracts
        self.withdrawn = dict.fromkeys(self.everyone, 0)
        self.purchases = {}  # id -> dict(account, model, price, deadline, status, validator, payouts)
        self.licence = set()  # (model, account)
        self.votes = {}  # (model, account) -> score
        self.stakes = {v: [0, 0] for v in self.everyone}  # amount, unlockAt
        self.attested = {m: {} for m in MODELS}  # model -> {validator: matches}
        self.slashed = set()  # (model, validator)
        self.status = dict.fromkeys(MODELS, 0)
        self.reward_per = dict.fromkeys(MODELS, 0)
        self.claimed = {}  # (model, validator) -> wei
        self.stamp = []  # (dict, key, offset): set to the last block's timestamp + offset once read
        self.now = self._read()[0]

    def teardown(self):
        if getattr(self, "snap", None) is not None:
            assert self.rpc("evm_revert", [self.snap]) is True

    # chain access --------------------------------------------------------------------------------
    def _send(self, contract, fn: str, args: list, sender: str, value: int = 0):
        """Mine one transaction; return None, or the decoded custom error's name (and keep its receipt)."""
        tx = {"from": sender, "to": contract.address, "data": calldata(contract, fn, args), "value": hex(value)}
        self.receipt = self.rpc("eth_sendTransactionSync", [{**tx, "gas": hex(GAS)}])
        if self.receipt["status"] == "0x1":
            return None
        reply = self.rpc.raw("eth_call", [tx, "latest"])  # state is unchanged by the revert: same error
        assert "error" in reply, f"{fn} reverted on chain but not in eth_call: {self.receipt}"
        return decode_revert(reply["error"]["data"]).context["error"]

    def _logged_amount(self) -> int:
        """The last uint256 of the receipt's last log's data (Withdrawn/Unstaked amounts)."""
        return int(self.receipt["logs"][-1]["data"][-64:], 16)

    def _read(self) -> list[int]:
        c = self.chain
        data = calldata(self.lens, "read", [c.market.address, c.votes.address, c.validators.address,
                                              self.everyone, len(self.purchases), list(MODELS)])
        out = self.rpc("eth_call", [{"to": self.lens.address, "data": data}, "latest"])
        return list(decode(["uint256[]"], bytes.fromhex(out[2:]))[0])

    def _credit(self, who: str, amount: int, validators: bool = False) -> None:
        (self.vcredited if validators else self.credited)[who] += amount
        self.earned[who] += amount

    def _open(self, account: str, model: int, price: int, validator: bool) -> None:
        p = {"account": account, "model": model, "price": price, "status": 1, "validator": validator, "payouts": 0}
        self.purchases[len(self.purchases) + 1] = p  # ids are sequential from 1 in every example
        self.stamp.append((p, "deadline", WINDOW))

    def _active(self, v: str) -> bool:
        amount, unlock_at = self.stakes[v]
        return unlock_at == 0 and amount >= MIN

    # rules: marketplace ----------------------------------------------------------------------------
    @rule(b=st.integers(0, 2), model=st.sampled_from(MODELS), overpay=st.booleans())
    def buy(self, b, model, overpay):
        buyer, price = self.buyers[b], self.price[model]
        err = self._send(self.chain.market, "buy", [model, BUYER_KEY, price], buyer, value=price + overpay)
        mine = [p for p in self.purchases.values() if (p["model"], p["account"], p["validator"]) == (model, buyer, False)]
        expected = ("MarketplaceWrongPayment" if overpay
                    else "MarketplaceModelDisputed" if self.status[model] == 2
                    else "MarketplaceAlreadyLicensed" if (model, buyer) in self.licence
                    else "MarketplacePurchasePending" if any(p["status"] == 1 for p in mine) else None)
        assert err == expected
        if err is None:
            self._open(buyer, model, price, False)

    @rule(v=st.integers(0, 2), model=st.sampled_from(MODELS))
    def request_key(self, v, model):
        val = self.vals[v]
        err = self._send(self.chain.market, "requestValidatorKey", [model, BUYER_KEY], val)
        mine = [p for p in self.purchases.values() if (p["model"], p["account"], p["validator"]) == (model, val, True)]
        expected = ("MarketplaceNotValidator" if not self._active(val)
                    else "MarketplaceAlreadyLicensed" if any(p["status"] == 2 for p in mine)
                    else "MarketplacePurchasePending" if any(p["status"] == 1 and self.now < p["deadline"] for p in mine)
                    else None)
        assert err == expected
        if err is None:
            for p in mine:
                if p["status"] == 1:
                    p["status"] = 4  # expired: replaced by the new request
            self._open(val, model, 0, True)

    def _disputed_pending(self, data) -> list[int]:
        """Three times in four (drawn), the buyers' purchases still pending on a disputed model: a
        draw over all purchases rarely lands on one (a default run once saw no early refund)."""
        found = sorted(pid for pid, p in self.purchases.items()
                       if p["status"] == 1 and not p["validator"] and self.status[p["model"]] == 2)
        return found if found and data.draw(st.integers(0, 3)) else []

    @rule(data=st.data(), by_owner=st.booleans())
    def deliver(self, data, by_owner):
        if not self.purchases:
            return
        pid = data.draw(st.sampled_from(self._disputed_pending(data) or sorted(self.purchases)))
        p = self.purchases[pid]
        owner = self.owner[p["model"]]
        sender = owner if by_owner else self.buyers[0]
        err = self._send(self.chain.market, "deliverKey", [pid, WRAPPED], sender)
        if p["status"] == 1 and self.status[p["model"]] == 2:
            self.disputed_steps["deliverKey"] += 1
        expected = ("MarketplaceNotPending" if p["status"] != 1
                    else "MarketplaceModelDisputed" if self.status[p["model"]] == 2  # never paid for bad content
                    else "MarketplaceDeliveryWindowClosed" if self.now >= p["deadline"]
                    else "MarketplaceNotDeliverer" if sender != owner else None)
        assert err == expected
        if err is not None:
            return
        p["status"], p["payouts"] = 2, p["payouts"] + 1
        if not p["validator"]:
            self.licence.add((p["model"], p["account"]))
        if p["price"]:
            fee = p["price"] * FEE_BPS // 10_000
            platform = fee
            if self.status[p["model"]] == 1:
                per = fee * SHARE_BPS // 10_000 // QUORUM
                self.reward_per[p["model"]] += per
                platform -= per * QUORUM
            self._credit(self.fee_recipient, platform)
            self._credit(owner, p["price"] - fee)

    @rule(data=st.data())
    def refund(self, data):
        if not self.purchases:
            return
        pid = data.draw(st.sampled_from(self._disputed_pending(data) or sorted(self.purchases)))
        p = self.purchases[pid]
        err = self._send(self.chain.market, "refund", [pid], p["account"])
        if p["status"] == 1 and not p["validator"] and self.status[p["model"]] == 2 and self.now < p["deadline"]:
            self.disputed_steps["refund before the deadline"] += 1
        expected = ("MarketplaceNotPending" if p["status"] in (3, 4) or (p["status"] == 2 and not p["validator"])
                    else "MarketplaceNotBuyer" if p["validator"]
                    # a disputed model's purchase can never be delivered: refundable at once
                    else "MarketplaceDeliveryWindowOpen" if self.now < p["deadline"] and self.status[p["model"]] != 2
                    else None)
        assert err == expected
        if err is None:
            p["status"], p["payouts"] = 3, p["payouts"] + 1
            self._credit(p["account"], p["price"])

    @rule(i=st.integers(0, 8))
    def withdraw(self, i):
        who = self.everyone[i]
        err = self._send(self.chain.market, "withdraw", [], who)
        assert err == (None if self.credited[who] else "MarketplaceNothingToWithdraw")
        if err is None:
            assert self._logged_amount() == self.credited[who]  # Withdrawn(account, amount): all of it, once
            self.withdrawn[who] += self.credited[who]
            self.credited[who] = 0

    @rule(model=st.sampled_from(MODELS), price=st.sampled_from(PRICES))
    def set_price(self, model, price):
        assert self._send(self.chain.registry, "setPrice", [model, price], self.owner[model]) is None
        self.price[model] = price

    @rule(model=st.sampled_from(MODELS), to=st.integers(0, 1))
    def transfer(self, model, to):
        old, new = self.owner[model], self.sellers[to]
        assert self._send(self.chain.registry, "transferFrom", [old, new, model], old) is None
        self.owner[model] = new

    @rule(i=st.integers(0, 6), model=st.sampled_from(MODELS), score=st.integers(0, 6))
    def vote(self, i, model, score):
        who = self.everyone[i]
        err = self._send(self.chain.votes, "vote", [model, score], who)
        expected = ("VotesScoreOutOfRange" if not 1 <= score <= 5
                    else "VotesNoLicense" if (model, who) not in self.licence else None)
        assert err == expected
        if err is None:
            self.votes[(model, who)] = score

    # rules: validators -------------------------------------------------------------------------------
    @rule(v=st.integers(0, 2), enough=st.booleans())
    def stake(self, v, enough):
        val = self.vals[v]
        amount = MIN if enough else MIN // 2
        err = self._send(self.chain.validators, "stake", [], val, value=amount)
        expected = ("ValidatorsUnstakePending" if self.stakes[val][1]
                    else "ValidatorsStakeTooLow" if self.stakes[val][0] + amount < MIN else None)
        assert err == expected
        if err is None:
            self.stakes[val][0] += amount

    @rule(v=st.integers(0, 2))
    def request_unstake(self, v):
        val = self.vals[v]
        err = self._send(self.chain.validators, "requestUnstake", [], val)
        amount, unlock_at = self.stakes[val]
        assert err == ("ValidatorsNotStaked" if amount == 0 else "ValidatorsUnstakePending" if unlock_at else None)
        if err is None:
            self.stamp.append((self.stakes[val], 1, DELAY))

    @rule(v=st.integers(0, 2))
    def unstake(self, v):
        val = self.vals[v]
        err = self._send(self.chain.validators, "unstake", [], val)
        amount, unlock_at = self.stakes[val]
        assert err == ("ValidatorsNotStaked" if amount == 0 else "ValidatorsUnstakeNotRequested" if not unlock_at
                       else "ValidatorsStillLocked" if self.now < unlock_at else None)
        if err is None:
            assert self._logged_amount() == amount  # Unstaked(validator, amount): the whole remaining stake
            self.stakes[val] = [0, 0]

    @rule(v=st.integers(0, 2), model=st.sampled_from(MODELS), good=st.booleans())
    def attest(self, v, model, good):
        val = self.vals[v]
        observed = self.hashes[model] if good else BAD_HASH
        err = self._send(self.chain.validators, "attest", [model, observed, b"\0" * 32], val)
        expected = ("ValidatorsNotActive" if not self._active(val)
                    else "ValidatorsAlreadySettled" if self.status[model]
                    else "ValidatorsAlreadyAttested" if val in self.attested[model] else None)
        assert err == expected
        if err is None:
            self.attested[model][val] = good
            votes = list(self.attested[model].values())
            if votes.count(True) >= QUORUM:
                self.status[model] = 1
            elif votes.count(False) >= QUORUM:
                self.status[model] = 2

    @rule(data=st.data())
    def dispute(self, data):
        """Validators (staking first where needed) attest a bad hash until the model settles, preferably
        a model with a purchase pending: single random steps rarely line up a quorum behind one."""
        pending = sorted({p["model"] for p in self.purchases.values() if p["status"] == 1 and not p["validator"]})
        model = data.draw(st.sampled_from(pending or list(MODELS)))
        for v, val in enumerate(self.vals):
            if self.status[model]:
                break
            if not self._active(val):
                self.stake(v, True)
            self.attest(v, model, False)

    @rule(v=st.integers(0, 2), model=st.sampled_from(MODELS))
    def slash(self, v, model):
        val = self.vals[v]
        err = self._send(self.chain.validators, "slash", [model, val], self.buyers[0])  # anyone may call
        status, matches = self.status[model], self.attested[model].get(val)
        expected = ("ValidatorsNotSettled" if status == 0
                    else "ValidatorsNotSlashable" if matches is None or (model, val) in self.slashed
                    or matches == (status == 1) else None)
        assert err == expected
        if err is None:
            self.slashed.add((model, val))
            amount = self.stakes[val][0] * SLASH_BPS // 10_000
            self.stakes[val][0] -= amount
            self._credit(self.treasury, amount, validators=True)

    @rule(v=st.integers(0, 2), model=st.sampled_from(MODELS))
    def claim_reward(self, v, model):
        val = self.vals[v]
        err = self._send(self.chain.market, "claimValidatorReward", [model], val)
        verifier = self.status[model] == 1 and self.attested[model].get(val) is True
        owed = self.reward_per[model] - self.claimed.get((model, val), 0)
        assert err == ("MarketplaceNotVerifier" if not verifier else "MarketplaceNothingToClaim" if not owed else None)
        if err is None:
            self.claimed[(model, val)] = self.reward_per[model]
            self._credit(val, owed)

    @rule()
    def treasury_withdraw(self):
        who = self.treasury
        err = self._send(self.chain.validators, "withdraw", [], who)
        assert err == (None if self.vcredited[who] else "ValidatorsNothingToWithdraw")
        if err is None:
            assert self._logged_amount() == self.vcredited[who]
            self.withdrawn[who] += self.vcredited[who]
            self.vcredited[who] = 0

    @rule(seconds=st.sampled_from([60, WINDOW + 1, DELAY + 1]))
    def travel(self, seconds):
        self.rpc("evm_increaseTime", [seconds])
        self.rpc("evm_mine", [])

    # invariants: all of them after every step, from one eth_call -----------------------------------
    @invariant()
    def chain_matches_model(self):
        if not hasattr(self, "credited"):
            return
        out = iter(self._read())
        self.now = next(out)
        for obj, key, offset in self.stamp:  # the last transaction's block is the latest block
            obj[key] = self.now + offset
        self.stamp = []
        market_balance, validators_balance = next(out), next(out)
        for who in self.everyone:
            got = (next(out), next(out), [next(out), next(out)])
            assert got == (self.credited[who], self.vcredited[who], self.stakes[who]), who
            assert self.withdrawn[who] <= self.earned[who], who  # nobody withdraws more than credited
        for pid, p in self.purchases.items():
            assert next(out) == p["status"], pid  # exactly one of pending/delivered/refunded/expired
            assert p["payouts"] <= 1, pid  # paid out (delivered or refunded) at most once
        escrow = sum(p["price"] for p in self.purchases.values() if p["status"] == 1)
        rewards = sum(self.reward_per[m] * QUORUM for m in MODELS if self.status[m] == 1) - sum(self.claimed.values())
        assert market_balance == escrow + sum(self.credited.values()) + rewards
        assert validators_balance == sum(s[0] for s in self.stakes.values()) + sum(self.vcredited.values())
        for m in MODELS:
            scores = [s for (mm, _), s in self.votes.items() if mm == m]
            agree = list(self.attested[m].values()).count(True)
            # each validator is counted once per model: the tally is the number of distinct attesters
            assert [next(out) for _ in range(5)] == [sum(scores), len(scores), agree, len(self.attested[m]) - agree,
                                                     self.status[m]], m
            for who in self.everyone:
                licensed, score, reward = next(out), next(out), next(out)
                assert licensed == ((m, who) in self.licence), (m, who)
                assert score == self.votes.get((m, who), 0), (m, who)
                assert not score or licensed  # only licence holders' votes are counted
                verifier = self.status[m] == 1 and self.attested[m].get(who) is True
                assert reward == (self.reward_per[m] - self.claimed.get((m, who), 0) if verifier else 0), (m, who)


def test_random_call_sequences(anvil_chain):
    c = anvil_chain
    snap = c.snapshot()
    try:
        hashes = {1: b"\x11" * 32, 2: b"\x12" * 32}
        c.list_model(c.accounts[1], price=10**17, model_hash=hashes[1])
        c.list_model(c.accounts[2], price=0, model_hash=hashes[2])
        SuiteMachine.chain, SuiteMachine.hashes = c, hashes
        SuiteMachine.rpc = Rpc(c.w3.provider.endpoint_uri)
        SuiteMachine.lens = c.deploy("Lens")
        SuiteMachine.runs = 0
        SuiteMachine.disputed_steps = dict.fromkeys(SuiteMachine.disputed_steps, 0)
        started = time.monotonic()
        run_state_machine_as_test(SuiteMachine, settings=settings(
            max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
            suppress_health_check=list(HealthCheck)))
        took = time.monotonic() - started
        print(f"\n{SuiteMachine.runs} random call sequences (max_examples={EXAMPLES}, up to {STEPS} steps) "
              f"in {took:.1f} s, {took / max(SuiteMachine.runs, 1) * 1000:.0f} ms each; steps on a disputed "
              f"model's pending purchase: {SuiteMachine.disputed_steps}")
        assert SuiteMachine.runs >= EXAMPLES
        if EXAMPLES >= 2000:
            # 2,000 sequences reach a disputed model's pending purchase 9-21 times with deliverKey and
            # 3-11 times with an early refund (2026-11-24 runs; one CI run saw 5 and 0): both rules
            # are pinned down by tests in test_marketplace.py, so this requires that the random
            # machine reached that state, not a count of each step.
            assert sum(SuiteMachine.disputed_steps.values()), SuiteMachine.disputed_steps
    finally:
        c.revert(snap)
