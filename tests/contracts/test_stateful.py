"""Random call sequences against the suite on anvil, checked against a Python model of the protocol.

This is the node's view of the contracts: what a purchase, a seat, a round, a stake and the money
should be after any sequence of calls, written from the contracts' rules (contracts/README.md). The
heavy campaign (100,000+ handler calls per CI run) is forge's (tests/forge); this one runs
MODEX_STATEFUL_EXAMPLES sequences (600 by default) of up to 14 steps, over buy / requestValidatorKey /
deliverKey (to the right or a wrong buyer) / releaseRevenue / refund / withdraw / vote / setPrice /
setActive / transferFrom / claimMetrics / stake / requestUnstake / unstake / commitAttestation /
revealAttestation (or a tampered reveal) / settle / release / claimValidatorReward / the treasury's
withdraw / time travel, plus three composite steps that line up what single random steps rarely do:
`subscribe_twice` (a subscription extended), `sell` (buy, deliver, vote, release, the
verifiers claim) and `validate` (a sale in flight, then a
round by the three validators, one of them possibly tampering with its reveal or asking for its key
only once commits closed, played again if undecided; the sale follows the verdict). A default run must
reach each rare state family (REACHED) at least once; it prints how often each was reached. After
EVERY step it checks, from one eth_call to tests/contracts/hostile/Lens.sol:
- ETH: Marketplace balance == escrow (pending prices) + held revenue (delivered, neither released nor
  refunded) + everything credited (subscriptions included: paid to the owner at once) + verifier
  rewards not yet claimed; Validators balance == stakes +
  forfeits credited to the treasury;
- each purchase is paid out (released or refunded) at most once; nobody withdraws more than credited;
- only eligible licences vote (delivered, bought at a price above 0 from someone else), weighted by
  the price: scoreOf is recomputed from the live votes;
- every seat, round, tally, status and stake (bonded = the bonds of its open seats, open seats counted)
  is the model's, so no bond leaves before its seat is released and no attestation exists without a
  delivered key and a commitment;
- every revert is the custom error the model predicts (and every success was predicted).

Time is deterministic: anvil mines each block one second after the previous one
(anvil_setBlockTimestampInterval), and travel sets the next block's timestamp, so the model knows the
timestamp of every transaction. What made it affordable (profiled): one ``eth_sendTransactionSync``
per transaction (EIP-7966) with explicit gas over a kept-alive connection (a revert costs one
``eth_call`` more, to decode the error), calldata encoded without web3's per-call ABI validation, and
all state read in one eth_call.
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
from conftest import BAD_HASH, BUYER_KEY, CLAIM, PARAMS, WRAPPED
from eth_abi import decode, encode
from eth_utils import function_abi_to_4byte_selector
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from node.protocol import ModelStatus, PurchaseStatus, SeatState
from node.revert import decode_revert

EXAMPLES = int(os.environ.get("MODEX_STATEFUL_EXAMPLES", "600"))
STEPS = 14  # hypothesis draws each sequence's length up to this
P = PARAMS
MIN, QUORUM, WINDOW, CHALLENGE, DELAY = (
    P["min_stake"],
    P["quorum"],
    P["delivery_window"],
    P["challenge_period"],
    P["unstake_delay"],
)
COMMIT, REVEAL, REQUEST_BOND, MAX_OPEN = (
    P["commit_period"],
    P["reveal_period"],
    P["request_bond"],
    P["max_open_requests"],
)
BOND_PER_WEIGHT = MIN * P["bond_bps"] // 10_000
PRICES = [0, 1, 10**15, 10**17]
# Model 1 offers a subscription (ETH, an hour for 0.001 ETH); model 2 offers none.
SUBSCRIPTION = {1: (10**15, 3600)}
MODELS = (1, 2)
HASHES = {1: b"\x11" * 32, 2: b"\x12" * 32}
OTHER_CLAIM = b"\x34" * 32
ATTESTATIONS = ("good", "bad hash", "other digest")  # what a validator commits to
VERDICTS = (*ATTESTATIONS, "mixed")  # what the validate rule's three validators commit to
GAS = 1_000_000
PENDING, DELIVERED, REFUNDED, EXPIRED = (
    PurchaseStatus.PENDING,
    PurchaseStatus.DELIVERED,
    PurchaseStatus.REFUNDED,
    PurchaseStatus.EXPIRED,
)
UNVERIFIED, VERIFIED = ModelStatus.UNVERIFIED, ModelStatus.VERIFIED
OPEN_SEATS = (SeatState.REQUESTED, SeatState.KEYED, SeatState.COMMITTED, SeatState.REVEALED)

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


class Rpc:
    """JSON-RPC over one kept-alive HTTP connection, without web3's per-call middleware."""

    def __init__(self, url: str):
        u = urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        self.ids = itertools.count(1)

    def raw(self, method: str, params: list) -> dict:
        body = json.dumps(
            {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}
        )
        self.conn.request("POST", "/", body, {"Content-Type": "application/json"})
        return json.loads(self.conn.getresponse().read())

    def __call__(self, method: str, params: list):
        reply = self.raw(method, params)
        if "error" in reply:
            raise AssertionError(f"{method} failed: {reply['error']}")
        return reply["result"]


_ENCODERS: dict = {}


def first_refusal(*checks: tuple[str, object]) -> str | None:
    """The error of the first (error, refused) check that refuses, in the order the contract checks
    them; None when none does (every condition is evaluated: they are side-effect free)."""
    return next((error for error, refused in checks if refused), None)


def calldata(contract, fn: str, args: list) -> str:
    """ABI-encode a call (web3's Contract.encode_abi validates the whole ABI each time: ~15 ms a call)."""
    key = (contract.address, fn, len(args))
    if key not in _ENCODERS:  # overloads (withdraw() / withdraw(token)) differ in their arity
        (entry,) = [
            e
            for e in contract.abi
            if e.get("type") == "function" and e["name"] == fn and len(e["inputs"]) == len(args)
        ]
        _ENCODERS[key] = (
            function_abi_to_4byte_selector(entry),
            [i["type"] for i in entry["inputs"]],
        )
    selector, types = _ENCODERS[key]
    return "0x" + (selector + encode(types, args)).hex()


class SuiteMachine(RuleBasedStateMachine):
    chain = rpc = lens = None  # set by the test
    runs = 0  # examples started (checked against max_examples by the test)
    # how often the rare, interesting states were reached (the test requires each, in a default run)
    reached: ClassVar[dict[str, int]] = {}

    @initialize()
    def start(self):
        type(self).runs += 1
        c = self.chain
        self.snap = self.rpc("evm_snapshot", [])
        a = c.accounts
        self.sellers, self.buyers, self.vals = a[1:3], a[1:6], a[6:9]
        self.fee_recipient = self.treasury = c.fee_recipient
        self.everyone = a[1:10]
        self.owner = {1: a[1], 2: a[2]}
        self.price = {1: 10**17, 2: 0}
        self.active = dict.fromkeys(MODELS, True)
        self.claim = dict.fromkeys(MODELS, CLAIM)
        self.claimed_at = dict(self.claimed_at0)
        self.credited = dict.fromkeys(self.everyone, 0)  # Marketplace
        self.vcredited = dict.fromkeys(self.everyone, 0)  # Validators (the treasury's forfeits)
        self.earned = dict.fromkeys(self.everyone, 0)  # everything ever credited, both contracts
        self.withdrawn = dict.fromkeys(self.everyone, 0)
        self.purchases = {}  # id -> dict(account, model, price, deadline, status, validator, ...)
        self.access = {}  # (model, account, validator?) -> the live purchase id
        self.votes = {}  # (model, account) -> score
        self.stakes = {
            v: {"amount": 0, "bonded": 0, "unlock": 0, "seats": 0} for v in self.everyone
        }
        self.rounds = {
            m: {
                "number": 0,
                "commit_end": 0,
                "reveal_end": 0,
                "status": UNVERIFIED,
                "tally": dict.fromkeys(ModelStatus, 0),
            }
            for m in MODELS
        }
        self.seats = {}  # (model, validator) -> dict(state, round, says, weight, bond, requested_at)
        self.commitments = {}  # (model, validator) -> (observed, digest, salt)
        self.subscriptions = {}  # (model, account) -> when its access ends
        self.books = {
            m: {"weight": 0, "disputed": False, "disputed_at": 0, "rpw": 0} for m in MODELS
        }
        self.reward_claimed = {}  # (model, validator) -> reward per weight claimed up to
        self.now = self.start_time

    def teardown(self):
        if getattr(self, "snap", None) is not None:
            assert self.rpc("evm_revert", [self.snap]) is True

    # chain access --------------------------------------------------------------------------------
    def _own_stake_call(self, v: int, fn: str, value: int = 0) -> tuple[str, int, str | None, dict]:
        """Validator ``v`` calls Validators.``fn`` on its own stake: (its address, the call's block
        time, the decoded error or None, the model's record of its stake)."""
        val = self.vals[v]
        err = self._send(self.chain.validators, fn, [], val, value=value)
        return val, self.now, err, self.stakes[val]

    def _send(self, contract, fn: str, args: list, sender: str, value: int = 0):
        """Mine one transaction (one second after the last block); return None, or the decoded custom
        error's name."""
        tx = {
            "from": sender,
            "to": contract.address,
            "data": calldata(contract, fn, args),
            "value": hex(value),
        }
        self.receipt = self.rpc("eth_sendTransactionSync", [{**tx, "gas": hex(GAS)}])
        self.now += 1
        if self.receipt["status"] == "0x1":
            self._count(f"ok {fn}")
            return None
        reply = self.rpc.raw(
            "eth_call", [tx, "latest"]
        )  # the revert left the state as it was: same error
        assert "error" in reply, f"{fn} reverted on chain but not in eth_call: {self.receipt}"
        return decode_revert(reply["error"]["data"]).context["error"]

    def _logged_amount(self) -> int:
        """The last uint256 of the receipt's last log's data (Withdrawn/Unstaked amounts)."""
        return int(self.receipt["logs"][-1]["data"][-64:], 16)

    def _read(self) -> list[int]:
        data = calldata(self.lens, "read", [self.everyone, len(self.purchases), list(MODELS)])
        out = self.rpc("eth_call", [{"to": self.lens.address, "data": data}, "latest"])
        return list(decode(["uint256[]"], bytes.fromhex(out[2:]))[0])

    def _credit(self, who: str, amount: int, validators: bool = False) -> None:
        (self.vcredited if validators else self.credited)[who] += amount
        self.earned[who] += amount

    def _count(self, what: str) -> None:
        self.reached[what] = self.reached.get(what, 0) + 1

    # the model's rules ---------------------------------------------------------------------------
    def _active_validator(self, v: str) -> bool:
        s = self.stakes[v]
        return s["unlock"] == 0 and s["amount"] >= MIN

    def _commits_closed(self, model: int, t: int) -> str | None:
        """Validators._requireCommitsOpen at time t."""
        r = self.rounds[model]
        if r["status"] != UNVERIFIED:
            return "ValidatorsAlreadySettled"
        if r["commit_end"] and t > r["commit_end"]:
            return "ValidatorsRoundNotSettled" if t > r["reveal_end"] else "ValidatorsCommitClosed"
        return None

    def _disputed_by(self, model: int, challenge_end: int) -> bool:
        b = self.books[model]
        return b["disputed"] and b["disputed_at"] <= challenge_end

    def _open(self, account: str, model: int, price: int, validator: bool, t: int) -> int:
        pid = len(self.purchases) + 1  # ids are sequential from 1 in every example
        old = self.access.get((model, account, validator))
        if old is not None:
            self.purchases[old]["superseded"] = True
        self.purchases[pid] = {
            "account": account,
            "model": model,
            "price": price,
            "status": PENDING,
            "validator": validator,
            "deadline": t + WINDOW,
            "delivered_at": 0,
            "released": False,
            "payouts": 0,
            "superseded": False,
            "owner_bought": not validator and account == self.owner[model],
        }
        self.access[(model, account, validator)] = pid
        return pid

    def _view_status(self, p: dict) -> PurchaseStatus:
        """Marketplace.purchase(id).status: a superseded purchase reads EXPIRED (validator) or REFUNDED."""
        if p["superseded"]:
            return EXPIRED if p["validator"] else REFUNDED
        return p["status"]

    def _verifier_weight(self, model: int, v: str) -> int:
        r, seat = self.rounds[model], self.seats.get((model, v))
        if (
            r["status"] != VERIFIED
            or not seat
            or seat["round"] != r["number"]
            or seat["says"] != VERIFIED
        ):
            return 0
        return seat["weight"]

    def _pick(self, data, candidates: list[int]) -> int:
        return data.draw(st.sampled_from(sorted(candidates)))

    def _pid(self, data, *prefer) -> int:
        """A purchase id: three times in four (drawn) one the first of ``prefer`` accepts, when there is
        one; else likewise for the next; else any (a draw over all purchases rarely lands on the
        interesting ones)."""
        for accept in prefer:
            preferred = [pid for pid, p in self.purchases.items() if accept(p)]
            if preferred and data.draw(st.integers(0, 3)):
                return self._pick(data, preferred)
        return self._pick(data, list(self.purchases))

    # rules: marketplace ----------------------------------------------------------------------------
    @rule(b=st.integers(0, 4), model=st.sampled_from(MODELS), overpay=st.booleans())
    def buy(self, b, model, overpay):
        buyer, price, t = self.buyers[b], self.price[model], self.now + 1
        err = self._send(
            self.chain.market, "buy", [model, BUYER_KEY, price], buyer, value=price + overpay
        )
        live = self.access.get((model, buyer, False))
        status = self.purchases[live]["status"] if live else None
        expected = (
            "MarketplaceModelInactive"
            if not self.active[model]
            else "MarketplaceWrongPayment"
            if overpay
            else "MarketplaceModelDisputed"
            if self.books[model]["disputed"]
            else "MarketplaceAlreadyLicensed"
            if status == DELIVERED
            else "MarketplacePurchasePending"
            if status == PENDING
            else None
        )
        assert err == expected, (err, expected)
        if err is None:
            self._open(buyer, model, price, False, t)

    @rule(v=st.integers(0, 2), model=st.sampled_from(MODELS))
    def request_key(self, v, model):
        val, t = self.vals[v], self.now + 1
        err = self._send(self.chain.market, "requestValidatorKey", [model, BUYER_KEY], val)
        live = self.access.get((model, val, True))
        p = self.purchases[live] if live else None
        seat = self.seats.get((model, val), {"state": SeatState.NONE})
        s = self.stakes[val]
        expected = (
            "MarketplaceModelInactive"
            if not self.active[model]
            else "MarketplaceAlreadyLicensed"
            if p and p["status"] == DELIVERED
            else "MarketplacePurchasePending"
            if p and p["status"] == PENDING and t <= p["deadline"]
            else "ValidatorsNotActive"
            if not self._active_validator(val)
            else self._commits_closed(model, t)
            or (
                None
                if seat["state"] == SeatState.REQUESTED
                else "ValidatorsTooManyOpenRequests"
                if s["seats"] >= MAX_OPEN
                else "ValidatorsStakeBonded"
                if s["amount"] - s["bonded"] < REQUEST_BOND
                else None
            )
        )
        assert err == expected, (err, expected)
        if err is not None:
            return
        self._open(val, model, 0, True, t)
        if seat["state"] == SeatState.REQUESTED:
            seat["requested_at"] = (
                t  # asked again after the old request expired: same seat, same bond
            )
            self._count("request made again")
        else:
            self.seats[(model, val)] = {
                "state": SeatState.REQUESTED,
                "round": 0,
                "says": 0,
                "weight": 0,
                "bond": 0,
                "requested_at": t,
            }
            s["bonded"] += REQUEST_BOND
            s["seats"] += 1
        if self.rounds[model]["number"] == 0:
            self.rounds[model]["number"] = 1

    @precondition(lambda self: self.purchases)
    @rule(data=st.data(), by_owner=st.booleans(), wrong_buyer=st.booleans())
    def deliver(self, data, by_owner, wrong_buyer):
        def pending(p):
            return p["status"] == PENDING and not p["superseded"]

        self._deliver(
            self._pid(data, lambda p: pending(p) and self.books[p["model"]]["disputed"], pending),
            by_owner,
            wrong_buyer,
        )

    def _deliver(self, pid: int, by_owner: bool, wrong_buyer: bool) -> None:
        p, t = self.purchases[pid], self.now + 1
        model = p["model"]
        owner = self.owner[model]
        sender = owner if by_owner else self.buyers[2]
        buyer = self.buyers[4] if wrong_buyer and p["account"] != self.buyers[4] else p["account"]
        err = self._send(self.chain.market, "deliverKey", [pid, buyer, WRAPPED], sender)
        expected = (
            "MarketplaceWrongBuyer"
            if buyer != p["account"]
            else "MarketplaceNotPending"
            if self._view_status(p) != PENDING
            else "MarketplaceModelDisputed"
            if self.books[model]["disputed"]
            else "MarketplaceDeliveryWindowClosed"
            if t > p["deadline"]
            else "MarketplaceNotDeliverer"
            if sender != owner
            else self._commits_closed(model, t)
            if p["validator"]
            else None
        )
        assert err == expected, (err, expected)
        if p["status"] == PENDING and self.books[model]["disputed"] and buyer == p["account"]:
            self._count("deliverKey of a disputed model's purchase")
        if err is not None:
            return
        p["status"], p["delivered_at"] = DELIVERED, t
        if p["validator"]:
            self.seats[(model, p["account"])]["state"] = SeatState.KEYED

    @precondition(lambda self: self.purchases)
    @rule(data=st.data())
    def release_revenue(self, data):
        self._release_revenue(
            self._pid(data, lambda p: p["status"] == DELIVERED and not p["released"] and p["price"])
        )

    def _release_revenue(self, pid: int) -> None:
        p, t = self.purchases[pid], self.now + 1
        err = self._send(self.chain.market, "releaseRevenue", [pid], self.buyers[2])
        challenge_end = p["delivered_at"] + CHALLENGE
        expected = (
            "MarketplaceNotPending"
            if p["superseded"]
            else "MarketplaceNothingToRelease"
            if p["status"] != DELIVERED or p["released"] or not p["price"]
            else "MarketplaceRevenueHeld"
            if t <= challenge_end
            else "MarketplaceModelDisputed"
            if self._disputed_by(p["model"], challenge_end)
            else None
        )
        assert err == expected, (err, expected)
        if err is not None:
            return
        p["released"], p["payouts"] = True, p["payouts"] + 1
        self._count("revenue released")
        self._pay_out(p["model"], p["price"])

    def _pay_out(self, model: int, amount: int) -> None:
        """A released sale or a subscription: the fee (shared with the verifiers by weight) and the
        rest to the model's owner now."""
        fee = amount * P["fee_bps"] // 10_000
        platform, book = fee, self.books[model]
        if fee and book["weight"]:
            per = fee * P["validator_share_bps"] // 10_000 // book["weight"]
            book["rpw"] += per
            platform -= per * book["weight"]
        self._credit(self.fee_recipient, platform)
        self._credit(self.owner[model], amount - fee)

    @rule(
        b=st.integers(0, 4),
        model=st.sampled_from(MODELS),
        periods=st.integers(0, 3),
        overpay=st.booleans(),
    )
    def subscribe(self, b, model, periods, overpay):
        """Paid to the owner at once less the fee, extended from the later of now and the expiry."""
        account, t = self.buyers[b], self.now + 1
        price, period = SUBSCRIPTION.get(model, (0, 0))
        total = periods * price
        err = self._send(
            self.chain.market, "subscribe", [model, periods, total], account, value=total + overpay
        )
        expected = first_refusal(
            ("MarketplaceNoSubscription", not price),
            ("MarketplaceModelInactive", not self.active[model]),
            ("MarketplaceModelDisputed", self.books[model]["disputed"]),
            ("MarketplaceBadPeriods", periods == 0),
            ("MarketplaceWrongPayment", overpay),
        )
        assert err == expected, (err, expected)
        if err is not None:
            return
        current = self.subscriptions.get((model, account), 0)
        if current > t:
            self._count("subscription extended")
        self.subscriptions[(model, account)] = max(current, t) + periods * period
        self._count("subscribed")
        self._pay_out(model, total)
        ends = self.chain.market.functions.accessUntil(model, account).call()
        assert ends == self.subscriptions[(model, account)], (ends, model, account)

    @rule(
        b=st.integers(0, 4), model=st.sampled_from(sorted(SUBSCRIPTION)), periods=st.integers(1, 3)
    )
    def subscribe_twice(self, b, model, periods):
        """The same buyer subscribes twice in a row: the second extends the first (two random
        `subscribe` steps rarely line this up before the model is disputed)."""
        self.subscribe(b, model, periods, overpay=False)
        self.subscribe(b, model, periods, overpay=False)

    @precondition(lambda self: self.purchases)
    @rule(data=st.data())
    def refund(self, data):
        def held(p):
            return p["status"] == DELIVERED and not p["released"] and p["price"] > 0

        self.refund_purchase(
            self._pid(
                data,
                lambda p: held(p) and self._disputed_by(p["model"], p["delivered_at"] + CHALLENGE),
                lambda p: (
                    not p["validator"]
                    and self.books[p["model"]]["disputed"]
                    and p["status"] == PENDING
                ),
            )
        )

    def refund_purchase(self, pid: int) -> None:
        p, t = self.purchases[pid], self.now + 1
        err = self._send(self.chain.market, "refund", [pid], p["account"])
        disputed = self.books[p["model"]]["disputed"]
        in_time = self._disputed_by(p["model"], p["delivered_at"] + CHALLENGE)
        expected = (
            "MarketplaceNotPending"
            if p["superseded"]
            else "MarketplaceNotBuyer"
            if p["validator"]
            else ("MarketplaceDeliveryWindowOpen" if t <= p["deadline"] and not disputed else None)
            if p["status"] == PENDING
            else (
                "MarketplaceNotRefundable"
                if p["released"] or not p["price"] or not in_time
                else None
            )
            if p["status"] == DELIVERED
            else "MarketplaceNotPending"
        )
        assert err == expected, (err, expected)
        if err is not None:
            return
        if p["status"] == DELIVERED:
            self._count("refund of a delivered sale after a dispute")
            self.votes.pop((p["model"], p["account"]), None)
        elif disputed and t <= p["deadline"]:
            self._count("refund of a disputed model's pending purchase before the deadline")
        p["status"], p["payouts"] = REFUNDED, p["payouts"] + 1
        self._credit(p["account"], p["price"])

    @rule(i=st.integers(0, 8))
    def withdraw(self, i):
        who = self.everyone[i]
        err = self._send(self.chain.market, "withdraw", [], who)
        assert err == (None if self.credited[who] else "MarketplaceNothingToWithdraw")
        if err is None:
            assert (
                self._logged_amount() == self.credited[who]
            )  # Withdrawn(account, amount): all of it, once
            self.withdrawn[who] += self.credited[who]
            self.credited[who] = 0

    @rule(model=st.sampled_from(MODELS), price=st.sampled_from(PRICES))
    def set_price(self, model, price):
        assert (
            self._send(self.chain.registry, "setPrice", [model, price], self.owner[model]) is None
        )
        self.price[model] = price

    @rule(model=st.sampled_from(MODELS), active=st.booleans())
    def set_active(self, model, active):
        assert (
            self._send(self.chain.registry, "setActive", [model, active], self.owner[model]) is None
        )
        self.active[model] = active

    @rule(model=st.sampled_from(MODELS), to=st.integers(0, 1))
    def transfer(self, model, to):
        old, new = self.owner[model], self.sellers[to]
        assert self._send(self.chain.registry, "transferFrom", [old, new, model], old) is None
        self.owner[model] = new

    @rule(model=st.sampled_from(MODELS), other=st.booleans())
    def claim_metrics(self, model, other):
        """Every model here was claimed at listing, and a claim is final: the owner cannot change it."""
        digest = OTHER_CLAIM if other else CLAIM
        assert (
            self._send(self.chain.registry, "claimMetrics", [model, digest], self.owner[model])
            == "ModelRegistryAlreadyClaimed"
        )

    @rule(i=st.integers(0, 8), model=st.sampled_from(MODELS), score=st.integers(0, 6))
    def vote(self, i, model, score):
        who = self.everyone[i]
        err = self._send(self.chain.votes, "vote", [model, score], who)
        live = self.access.get((model, who, False))
        p = self.purchases[live] if live else None
        eligible = (
            p is not None and p["status"] == DELIVERED and p["price"] > 0 and not p["owner_bought"]
        )
        if p is not None and p["status"] == DELIVERED and not eligible:
            self._count("vote refused to a free or owner-bought licence")
        expected = first_refusal(
            ("VotesScoreOutOfRange", not 1 <= score <= 5),
            ("VotesNoLicense", not eligible),
        )
        assert err == expected, (err, expected)
        if err is None:
            self.votes[(model, who)] = score

    # rules: validators -------------------------------------------------------------------------------
    @rule(v=st.integers(0, 2), enough=st.booleans())
    def stake(self, v, enough):
        amount = MIN if enough else MIN // 2
        _val, _t, err, s = self._own_stake_call(v, "stake", value=amount)
        expected = first_refusal(
            ("ValidatorsUnstakePending", s["unlock"]),
            ("ValidatorsStakeTooLow", s["amount"] + amount < MIN),
        )
        assert err == expected, (err, expected)
        if err is None:
            s["amount"] += amount

    @rule(v=st.integers(0, 2))
    def request_unstake(self, v):
        _val, t, err, s = self._own_stake_call(v, "requestUnstake")
        expected = first_refusal(
            ("ValidatorsNotStaked", s["amount"] == 0),
            ("ValidatorsUnstakePending", s["unlock"]),
            ("ValidatorsOpenSeats", s["seats"]),
        )
        assert err == expected, (err, expected)
        if err == "ValidatorsOpenSeats":
            self._count("requestUnstake refused with open seats")
        if err is None:
            s["unlock"] = t + DELAY

    @rule(v=st.integers(0, 2))
    def unstake(self, v):
        val, t, err, s = self._own_stake_call(v, "unstake")
        expected = first_refusal(
            ("ValidatorsNotStaked", s["amount"] == 0),
            ("ValidatorsUnstakeNotRequested", not s["unlock"]),
            ("ValidatorsStillLocked", t < s["unlock"]),
        )
        assert err == expected, (err, expected)
        if err is None:
            assert (
                self._logged_amount() == s["amount"]
            )  # Unstaked(validator, amount): the whole remaining stake
            self.stakes[val] = {"amount": 0, "bonded": 0, "unlock": 0, "seats": 0}

    def _attestation(self, model: int, kind: str) -> tuple[bytes, bytes]:
        return {
            "good": (HASHES[model], CLAIM),
            "bad hash": (BAD_HASH, CLAIM),
            "other digest": (HASHES[model], OTHER_CLAIM),
        }[kind]

    @rule(v=st.integers(0, 2), model=st.sampled_from(MODELS), kind=st.sampled_from(ATTESTATIONS))
    def commit(self, v, model, kind):
        val, t = self.vals[v], self.now + 1
        observed, digest = self._attestation(model, kind)
        salt = os.urandom(32)
        commitment = self.chain.commitment(model, val, observed, digest, salt)
        err = self._send(self.chain.validators, "commitAttestation", [model, commitment], val)
        r, s = self.rounds[model], self.stakes[val]
        seat = self.seats.get((model, val), {"state": SeatState.NONE, "round": 0, "bond": 0})
        again = seat["state"] == SeatState.REVEALED and seat["round"] < r["number"]
        weight = s["amount"] // MIN
        bond = weight * BOND_PER_WEIGHT
        bonded = s["bonded"] - (seat["bond"] if again else 0)
        expected = self._commits_closed(model, t) or (
            "ValidatorsNoKey"
            if seat["state"] != SeatState.KEYED and not again
            else "ValidatorsStakeTooLow"
            if weight == 0
            else "ValidatorsStakeBonded"
            if s["amount"] - bonded < bond
            else None
        )
        assert err == expected, (err, expected)
        if err is not None:
            return
        if again:
            self._count("commit again after an undecided round")
        if not r["commit_end"]:
            r["commit_end"], r["reveal_end"] = t + COMMIT, t + COMMIT + REVEAL
        s["bonded"] = bonded + bond
        seat.update(state=SeatState.COMMITTED, round=r["number"], says=0, weight=weight, bond=bond)
        self.commitments[(model, val)] = (observed, digest, salt)

    @precondition(lambda self: self.commitments)
    @rule(v=st.integers(0, 2), model=st.sampled_from(MODELS), tamper=st.booleans())
    def reveal(self, v, model, tamper):
        val, t = self.vals[v], self.now + 1
        committed = self.commitments.get((model, val))
        observed, digest, salt = committed or (HASHES[model], CLAIM, bytes(32))
        if tamper:
            salt = bytes(32)
        err = self._send(
            self.chain.validators, "revealAttestation", [model, observed, digest, salt], val
        )
        r = self.rounds[model]
        seat = self.seats.get((model, val), {"state": SeatState.NONE, "round": 0})
        expected = (
            "ValidatorsNothingToReveal"
            if seat["state"] != SeatState.COMMITTED
            or seat["round"] != r["number"]
            or not r["commit_end"]
            else "ValidatorsRevealNotOpen"
            if t <= r["commit_end"]
            else "ValidatorsRevealClosed"
            if t > r["reveal_end"]
            else "ValidatorsRevealMismatch"
            if tamper
            else None
        )
        assert err == expected, (err, expected)
        if err is not None:
            return
        opened = r["commit_end"] - COMMIT
        if observed != HASHES[model]:
            says = ModelStatus.DISPUTED
        elif digest == self.claim[model] and self.claimed_at[model] <= opened:
            says = VERIFIED
        else:
            says = ModelStatus.METRICS_DISPUTED
        r["tally"][says] += seat["weight"]
        seat.update(state=SeatState.REVEALED, says=says)
        del self.commitments[(model, val)]

    @rule(model=st.sampled_from(MODELS))
    def settle(self, model):
        t = self.now + 1
        err = self._send(self.chain.validators, "settle", [model], self.buyers[2])
        r = self.rounds[model]
        expected = first_refusal(
            ("ValidatorsAlreadySettled", r["status"] != UNVERIFIED),
            ("ValidatorsNoRound", not r["commit_end"]),
            ("ValidatorsRevealOpen", t <= r["reveal_end"]),
        )
        assert err == expected, (err, expected)
        if err is not None:
            return
        total = sum(r["tally"].values())
        decided = [
            s
            for s in (VERIFIED, ModelStatus.METRICS_DISPUTED, ModelStatus.DISPUTED)
            if total >= QUORUM and 2 * r["tally"][s] > total
        ]
        if not decided:
            self._count("round undecided")
            r.update(
                number=r["number"] + 1,
                commit_end=0,
                reveal_end=0,
                tally=dict.fromkeys(ModelStatus, 0),
            )
            return
        r["status"] = decided[0]
        self._count(f"settled {decided[0].name}")
        book = self.books[model]
        if decided[0] == VERIFIED:
            book["weight"] = r["tally"][VERIFIED]
        else:
            book["disputed"], book["disputed_at"] = True, t

    @precondition(lambda self: self.seats)
    @rule(v=st.integers(0, 2), model=st.sampled_from(MODELS))
    def release(self, v, model):
        val, t = self.vals[v], self.now + 1
        err = self._send(self.chain.validators, "release", [model, val], self.buyers[2])
        r, seat = self.rounds[model], self.seats.get((model, val), {"state": SeatState.NONE})
        settled = r["status"] != UNVERIFIED
        state = seat["state"]
        forfeit_request = forfeit_commit = False
        releasable = True
        if state == SeatState.REQUESTED:
            releasable = t > seat["requested_at"] + WINDOW
        elif state == SeatState.KEYED:
            releasable = forfeit_request = settled
        elif state == SeatState.COMMITTED:
            releasable = (
                seat["round"] < r["number"]
                or settled
                or (r["commit_end"] != 0 and t > r["reveal_end"])
            )
            forfeit_request = forfeit_commit = True
        elif state == SeatState.REVEALED:
            current = seat["round"] == r["number"]
            releasable = not (current and not settled)
            forfeit_commit = current and seat["says"] != r["status"]
            forfeit_request = not current and settled
        else:
            releasable = False
        assert err == (None if releasable else "ValidatorsNothingToRelease"), err
        if err is not None:
            return
        bond = seat["bond"] if state >= SeatState.COMMITTED else 0
        forfeited = (REQUEST_BOND if forfeit_request else 0) + (bond if forfeit_commit else 0)
        s = self.stakes[val]
        s["bonded"] -= REQUEST_BOND + bond
        s["amount"] -= forfeited
        s["seats"] -= 1
        if forfeited:
            self._count("bond forfeited")
            self._credit(self.treasury, forfeited, validators=True)
        if state == SeatState.REQUESTED:
            del self.seats[(model, val)]
        else:
            seat["state"] = SeatState.RELEASED
        self.commitments.pop((model, val), None)

    @precondition(lambda self: any(r["status"] == VERIFIED for r in self.rounds.values()))
    @rule(data=st.data())
    def claim_reward(self, data):
        """Three times in four (drawn) a verifier of a verified model, when there is one."""
        verifiers = [(m, val) for m in MODELS for val in self.vals if self._verifier_weight(m, val)]
        if verifiers and data.draw(st.integers(0, 3)):
            model, val = data.draw(st.sampled_from(verifiers))
        else:
            model, val = data.draw(st.sampled_from(MODELS)), data.draw(st.sampled_from(self.vals))
        self._claim_reward(model, val)

    def _claim_reward(self, model: int, val: str) -> None:
        err = self._send(self.chain.market, "claimValidatorReward", [model], val)
        weight = self._verifier_weight(model, val)
        rpw = self.books[model]["rpw"]
        owed = (rpw - self.reward_claimed.get((model, val), 0)) * weight
        assert err == (
            "MarketplaceNotVerifier"
            if not weight
            else "MarketplaceNothingToClaim"
            if not owed
            else None
        )
        if err is None:
            self._count("verifier reward claimed")
            self.reward_claimed[(model, val)] = rpw
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

    @rule(
        seconds=st.sampled_from([5, COMMIT + 1, REVEAL + 1, CHALLENGE + 1, WINDOW + 1, DELAY + 1])
    )
    def travel(self, seconds):
        self.now += seconds
        self.rpc("evm_setNextBlockTimestamp", [self.now])
        self.rpc("evm_mine", [])

    @rule(data=st.data(), b=st.integers(0, 4), score=st.integers(0, 5), release=st.booleans())
    def sell(self, data, b, score, release):
        """A sale in one step, through the rules above (each still checks its own outcome): buy (a
        verified model three times in four, when there is one), the owner delivers, the buyer votes
        ``score`` (0: no vote) and, if ``release``, the challenge period passes, the revenue is released
        and the model's verifiers claim their share."""
        verified = [m for m in MODELS if self.rounds[m]["status"] == VERIFIED]
        model = data.draw(
            st.sampled_from(verified if verified and data.draw(st.integers(0, 3)) else MODELS)
        )
        pid = self._bought(b, model)
        if pid is None:
            return
        self._deliver(pid, by_owner=True, wrong_buyer=False)
        if score:
            self.vote(self.everyone.index(self.buyers[b]), model, score)
        if release and self.purchases[pid]["status"] == DELIVERED:
            self._release_and_claim(pid)

    def _bought(self, b: int, model: int) -> int | None:
        """Buyer ``b`` buys ``model`` (made active first): the new purchase id, or None when refused (the
        buy rule checked why: licensed already, pending, disputed)."""
        self.set_active(model, True)
        before = len(self.purchases)
        self.buy(b, model, False)
        return len(self.purchases) if len(self.purchases) > before else None

    def _release_and_claim(self, pid: int) -> None:
        """The challenge period of ``pid`` passes, its revenue is released (or refused: disputed) and the
        model's verifiers claim their share."""
        self.travel(CHALLENGE + 1)
        self._release_revenue(pid)
        model = self.purchases[pid]["model"]
        for val in self.vals:
            if self._verifier_weight(model, val):
                self._claim_reward(model, val)

    @rule(
        model=st.sampled_from(MODELS),
        verdict=st.sampled_from(VERDICTS),
        mixed=st.permutations(ATTESTATIONS),
        tamper=st.integers(-1, 2),
        late=st.integers(-1, 2),
        b=st.integers(0, 4),
        price=st.sampled_from(PRICES),
        delivered=st.booleans(),
        release=st.booleans(),
    )
    def validate(self, model, verdict, mixed, tamper, late, b, price, delivered, release):
        """Validation of a model with a sale in flight, in one step, through the rules above (each still
        checks its own outcome). Buyer ``b`` buys at ``price`` (and, if ``delivered``, gets the key); the three
        validators play a round: they stake where needed, ask for the key, get it from the owner, commit
        what ``verdict`` says (all alike, or one of each), reveal (one of them, ``tamper``, with a wrong
        salt) and settle, except validator ``late``, which asks for the key only once commits closed and
        whose request the owner then tries to answer; an undecided round is played once more, everyone
        on time and nobody tampering. Then, if
        ``release``, their seats are released. The sale follows the verdict: on a disputed model the owner
        tries to deliver and the buyer refunds; otherwise it is delivered and, if ``release``, its revenue
        released and the verifiers' share claimed."""
        if self.rounds[model]["status"] != UNVERIFIED:
            return
        self.set_price(model, price)
        sold = self._bought(b, model)
        if sold is not None and delivered:
            self._deliver(sold, by_owner=True, wrong_buyer=False)
        self._play_rounds(model, mixed if verdict == "mixed" else [verdict] * 3, tamper, late)
        if release:
            for v in range(3):
                self.release(v, model)
        if sold is not None:
            self._settle_sale(model, sold, release)

    def _play_rounds(self, model, kinds, tamper, late):
        """Ends a round under way, then plays rounds with the validators' ``kinds`` of verdict
        until the model is decided: ``tamper`` and ``late`` act in the first one only, and a
        second one is played if the first left it undecided."""
        if self.rounds[model]["commit_end"]:  # a round is under way: let it end first
            self.travel(COMMIT + REVEAL + 1)
            self.settle(model)
        for attempt in range(2):
            if self.rounds[model]["status"] != UNVERIFIED:
                break
            self._round(model, kinds, *((tamper, late) if attempt == 0 else (-1, -1)))

    def _settle_sale(self, model, sold, release):
        """The sale after the verdict: refunded on a disputed model (the owner's delivery is
        refused), else delivered and, if ``release``, its revenue released and claimed."""
        if self.books[model]["disputed"]:
            if self.purchases[sold]["status"] == PENDING:
                self._deliver(
                    sold, by_owner=True, wrong_buyer=False
                )  # refused: never paid for bad content
            self.refund_purchase(sold)
            return
        if self.purchases[sold]["status"] == PENDING:
            self._deliver(sold, by_owner=True, wrong_buyer=False)
        if release and self.purchases[sold]["status"] == DELIVERED:
            self._release_and_claim(sold)

    def _answer_key_request(self, model: int, val: str) -> None:
        """The owner delivers the validator's pending key request, if it has one."""
        pid = self.access.get((model, val, True))
        if (
            pid
            and self.purchases[pid]["status"] == PENDING
            and not self.purchases[pid]["superseded"]
        ):
            self._deliver(pid, by_owner=True, wrong_buyer=False)

    def _round(self, model: int, kinds, tamper: int, late: int) -> None:
        for v, val in enumerate(self.vals):
            if v == late:
                continue
            if self.stakes[val]["unlock"] and self.now < self.stakes[val]["unlock"]:
                continue
            if self.stakes[val]["unlock"]:
                self.unstake(v)
            if self.stakes[val]["amount"] < MIN:
                self.stake(v, True)
            if self.seats.get((model, val), {"state": SeatState.NONE})["state"] == SeatState.NONE:
                self.request_key(v, model)
            self._answer_key_request(model, val)
            self.commit(v, model, kinds[v])
        self.travel(COMMIT + 1)
        if late >= 0:  # a key asked for, or answered, once commits closed could not take part
            self.request_key(late, model)
            self._answer_key_request(model, self.vals[late])
        for v in range(3):
            self.reveal(v, model, tamper == v)
        self.travel(REVEAL + 1)
        self.settle(model)

    # invariants: all of them after every step, from one eth_call -----------------------------------
    @invariant()
    def chain_matches_model(self):
        if not hasattr(self, "credited"):
            return
        out = iter(self._read())
        assert next(out) == self.now  # the model knows the time of every block
        market_balance, validators_balance = next(out), next(out)
        for who in self.everyone:
            s = self.stakes[who]
            got = (next(out), next(out), [next(out) for _ in range(4)])
            assert got == (
                self.credited[who],
                self.vcredited[who],
                [s["amount"], s["bonded"], s["unlock"], s["seats"]],
            ), who
            assert self.withdrawn[who] <= self.earned[who], (
                who
            )  # nobody withdraws more than credited
            seats = [
                seat
                for (m, v), seat in self.seats.items()
                if v == who and seat["state"] in OPEN_SEATS
            ]
            # the stake bonded is exactly the bonds of the open seats, and no more than the stake
            assert s["seats"] == len(seats) and s["bonded"] <= s["amount"], who
            assert s["bonded"] == sum(
                REQUEST_BOND + (seat["bond"] if seat["state"] >= SeatState.COMMITTED else 0)
                for seat in seats
            ), who
        for pid, p in self.purchases.items():
            got = [next(out) for _ in range(3)]
            expected = [
                self._view_status(p),
                0 if p["superseded"] else p["delivered_at"],
                0 if p["superseded"] else int(p["released"]),
            ]
            assert got == expected, pid
            assert p["payouts"] <= 1, pid  # paid out (released or refunded) at most once
        escrow = sum(p["price"] for p in self.purchases.values() if p["status"] == PENDING)
        held = sum(
            p["price"]
            for p in self.purchases.values()
            if p["status"] == DELIVERED and not p["released"]
        )
        rewards = sum(b["rpw"] * b["weight"] for b in self.books.values()) - sum(
            rpw * self._verifier_weight(m, v) for (m, v), rpw in self.reward_claimed.items()
        )
        assert market_balance == escrow + held + sum(self.credited.values()) + rewards
        assert validators_balance == sum(s["amount"] for s in self.stakes.values()) + sum(
            self.vcredited.values()
        )
        for m in MODELS:
            live = [
                (self.purchases[self.access[(m, who, False)]]["price"], score)
                for (mm, who), score in self.votes.items()
                if mm == m
            ]
            r, b = self.rounds[m], self.books[m]
            tally = [
                r["tally"][VERIFIED],
                r["tally"][ModelStatus.DISPUTED],
                r["tally"][ModelStatus.METRICS_DISPUTED],
            ]
            expected = [
                sum(price * score for price, score in live),
                sum(price for price, _ in live),
                len(live),
                *tally,
                r["status"],
                r["number"],
                r["commit_end"],
                r["reveal_end"],
                b["weight"],
                int(b["disputed"]),
                b["disputed_at"],
                b["rpw"],
            ]
            assert [next(out) for _ in range(14)] == expected, m
            for who in self.everyone:
                licensed, score, reward = next(out), next(out), next(out)
                seat = [next(out) for _ in range(5)]
                has_commitment = next(out)
                live_pid = self.access.get((m, who, False))
                licence = live_pid is not None and self.purchases[live_pid]["status"] == DELIVERED
                assert licensed == licence, (m, who)
                assert score == self.votes.get((m, who), 0), (m, who)
                assert not score or licensed  # only licence holders' votes count
                weight = self._verifier_weight(m, who)
                owed = (b["rpw"] - self.reward_claimed.get((m, who), 0)) * weight
                assert reward == owed, (m, who)
                mine = self.seats.get((m, who))
                want = (
                    [mine["state"], mine["round"], mine["says"], mine["weight"], mine["bond"]]
                    if mine
                    else [0, 0, 0, 0, 0]
                )
                assert seat == want, (m, who)
                # an attestation exists only from a delivered key and a commitment
                assert has_commitment == int((m, who) in self.commitments), (m, who)


def test_random_call_sequences(anvil_chain):
    c = anvil_chain
    snap = c.snapshot()
    rpc = Rpc(c.w3.provider.endpoint_uri)
    try:
        rpc("anvil_setBlockTimestampInterval", [1])  # every block one second after the last
        c.list_model(c.accounts[1], price=10**17, model_hash=HASHES[1])
        c.list_model(c.accounts[2], price=0, model_hash=HASHES[2])
        for model, (price, period) in SUBSCRIPTION.items():
            c.send(c.registry.functions.setSubscription(model, price, period), c.accounts[model])
        SuiteMachine.claimed_at0 = {
            m: c.registry.functions.attestationTarget(m).call()[2] for m in MODELS
        }
        SuiteMachine.chain, SuiteMachine.rpc, SuiteMachine.lens = (
            c,
            rpc,
            c.deploy("Lens", c.market.address, c.votes.address, c.validators.address),
        )
        SuiteMachine.start_time = c.now()
        SuiteMachine.runs = 0
        SuiteMachine.reached = {}
        started = time.monotonic()
        run_state_machine_as_test(
            SuiteMachine,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
        took = time.monotonic() - started
        print(
            f"\n{SuiteMachine.runs} random call sequences (max_examples={EXAMPLES}, up to {STEPS} steps) "
            f"in {took:.1f} s, {took / max(SuiteMachine.runs, 1) * 1000:.0f} ms each; states reached: "
            f"{dict(sorted(SuiteMachine.reached.items()))}"
        )
        assert SuiteMachine.runs >= EXAMPLES
        if EXAMPLES >= 500:
            # each rule that is there for a rare state must have reached it at least once
            missing = [
                family
                for family, states in REACHED.items()
                if not any(SuiteMachine.reached.get(state) for state in states)
            ]
            assert not missing, (missing, SuiteMachine.reached)
    finally:
        rpc("anvil_removeBlockTimestampInterval", [])
        c.revert(snap)


# The rare states the rules are there for: a default run must reach each family at least once (one of
# its states; each state is also pinned down by a deterministic test in test_marketplace.py,
# test_votes_validators.py or test_attacks.py).
REACHED = {
    "a disputed model's purchase": (
        "refund of a delivered sale after a dispute",
        "refund of a disputed model's pending purchase before the deadline",
        "deliverKey of a disputed model's purchase",
    ),
    "revenue released": ("revenue released",),
    "subscribed": ("subscribed",),
    "subscription extended": ("subscription extended",),
    "verifier reward claimed": ("verifier reward claimed",),
    "each outcome": ("settled VERIFIED",),
    "disputed": ("settled DISPUTED",),
    "metrics disputed": ("settled METRICS_DISPUTED",),
    "undecided": ("round undecided",),
    "again": ("commit again after an undecided round",),
    "forfeits": ("bond forfeited",),
    "no leaving with open seats": ("requestUnstake refused with open seats",),
    "ineligible votes": ("vote refused to a free or owner-bought licence",),
}
