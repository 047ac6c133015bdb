"""The seller's claimer (node/claimer.py): the vouchers its service stored are claimed on-chain
above the threshold or near the channel's expiry, each amount exactly once, crash or not.

The in-process tests run on the embedded chain; the kill test runs `modex worker --once
--service-store FILE` on anvil as a subprocess that SIGKILLs itself at each point
($MODEX_CLAIMER_CRASH), as the key-delivery worker's test does."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from modex_stack import make_stack, publish_model, time_travel, write_model

from node.channels import sign_voucher
from node.claimer import CRASH_POINTS, Claimer
from node.servicestore import open_service_store

PRICE = 10**12
DEPOSIT = 1000 * PRICE
FEE_BPS = 250
ETH = "0x" + "00" * 20
DAY = 86400


class Market:
    """A journey with a listed model (price per call set), a channel opened by the buyer, and
    the seller's service store."""

    def __init__(self, stack, store_file):
        self.stack, self.chain = stack, stack.chain
        self.channels = self.chain.contract("Channels")
        self.model_id = publish_model(stack, write_model(store_file.parent / "model"))
        seller, self.buyer = stack.signers["seller"], stack.signers["buyer"]
        self.chain.transact(self.channels.functions.setCallPrice(self.model_id, PRICE), seller)
        self.store_file = store_file
        self.store = open_service_store(store_file)
        self.channel_id = self.open_channel()

    def now(self) -> int:
        return self.chain.get_block("latest")["timestamp"]

    def open_channel(self, lasts: int = 30 * DAY) -> int:
        fn = self.channels.functions.openChannel(self.model_id, ETH, DEPOSIT, self.now() + lasts)
        receipt = self.chain.transact(fn, self.buyer, value=DEPOSIT)
        (event,) = self.channels.events.ChannelOpened().process_receipt(receipt)
        return int(event["args"]["channelId"])

    def serve(self, calls: int, channel_id: int | None = None) -> int:
        """Store the vouchers of ``calls`` more calls, as the service does; the amount held."""
        channel_id = channel_id or self.channel_id
        held = (self.store.highest_voucher(channel_id) or (0, b""))[0]
        for _ in range(calls):
            held += PRICE
            signature = sign_voucher(
                self.buyer, self.chain.chain_id, self.channels.address, channel_id, held
            )
            assert self.store.accept_voucher(
                channel_id, held, signature, previous_at_most=held - PRICE, limit=DEPOSIT
            )
        return held

    def claimer(self, **options) -> Claimer:
        return Claimer(
            self.chain, self.stack.signers["seller"], self.store, threshold_calls=50, **options
        )

    def claimed_on_chain(self, channel_id: int | None = None) -> int:
        channel = self.chain.call(self.channels.functions.channel(channel_id or self.channel_id))
        return int(channel[4])

    def claims(self) -> list:
        """Every ChannelClaimed since the deployment."""
        return self.chain.events("ChannelClaimed")

    def credited(self) -> int:
        seller = self.stack.signers["seller"].address
        return int(self.chain.call(self.channels.functions.credited(seller, ETH)))


@pytest.fixture
def market(tmp_path):
    return Market(make_stack("embedded", tmp_path, fee_bps=FEE_BPS), tmp_path / "service.sqlite3")


def test_a_channel_is_claimed_once_the_threshold_is_reached_and_only_once(market):
    market.serve(49)
    report = market.claimer().poll()
    assert report.claimed == {} and "below 50 calls" in report.waiting[market.channel_id]
    held = market.serve(51)  # 100 calls: one claim pays them all
    assert market.claimer().poll().claimed == {market.channel_id: held}
    assert market.claimed_on_chain() == held == 100 * PRICE
    assert market.credited() == held - held * FEE_BPS // 10_000
    assert market.store.vouchers_to_claim() == []
    assert market.claimer().poll().claimed == {}  # nothing new: nothing sent
    assert len(market.claims()) == 1


def test_a_channel_near_its_expiry_is_claimed_whatever_the_amount(market):
    soon = market.open_channel(lasts=1800)
    market.serve(3, soon)
    market.serve(3)
    report = market.claimer(margin_s=3600).poll()
    assert report.claimed == {soon: 3 * PRICE}  # expires within the margin
    assert market.channel_id in report.waiting  # 3 calls, a month left: later


def test_a_claim_already_on_chain_is_marked_not_sent_again(market):
    held = market.serve(60)
    signature = market.store.highest_voucher(market.channel_id)[1]
    # as if the claimer had been killed after the receipt, before marking it
    fn = market.channels.functions.claim(market.channel_id, held, signature)
    market.chain.transact(fn, market.stack.signers["seller"])
    report = market.claimer().poll()
    assert report.claimed == {} and report.already == {market.channel_id: held}
    assert market.store.vouchers_to_claim() == [] and len(market.claims()) == 1


def test_a_channel_the_buyer_reclaimed_is_left_alone(market):
    market.serve(60)
    time_travel(market.chain, 31 * DAY)
    market.chain.transact(market.channels.functions.reclaim(market.channel_id), market.buyer)
    report = market.claimer().poll()
    assert report.claimed == {} and "closed" in report.waiting[market.channel_id]
    assert market.claims() == []


def run_worker(stack, store_file, crash=None) -> subprocess.CompletedProcess:
    env = stack.env()
    env.pop("MODEX_CLAIMER_CRASH", None)
    if crash:
        env["MODEX_CLAIMER_CRASH"] = crash
    return subprocess.run(
        stack.modex_cmd("seller", "worker", "--once", "--service-store", str(store_file)),
        env={**env, "MODEX_CLAIM_THRESHOLD_CALLS": "50"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.anvil
@pytest.mark.slow
def test_the_claimer_killed_at_each_point_claims_every_voucher_exactly_once(tmp_path, anvil):
    market = Market(
        make_stack("anvil", tmp_path, anvil_url=anvil.url, fee_bps=FEE_BPS),
        tmp_path / "service.sqlite3",
    )
    held = 0
    for point in CRASH_POINTS:
        held = market.serve(60)  # more calls since the last claim: a claim is due
        result = run_worker(market.stack, market.store_file, crash=point)
        assert result.returncode == -9, (point, result.stdout, result.stderr)  # killed there
    result = run_worker(market.stack, market.store_file)
    assert result.returncode == 0, result.stderr
    assert market.claimed_on_chain() == held == 180 * PRICE
    assert market.store.vouchers_to_claim() == []
    # before_send sent nothing; after_send and after_receipt each mined their claim once
    amounts = [int(e["args"]["cumulativeAmount"]) for e in market.claims()]
    assert amounts == sorted(set(amounts)) and amounts[-1] == held
    assert market.credited() == held - sum(int(e["args"]["fee"]) for e in market.claims())
    assert run_worker(market.stack, market.store_file).returncode == 0
    assert len(market.claims()) == len(amounts)  # a clean pass after all: nothing more sent


def test_modex_worker_claims_from_the_store_modex_serve_keeps_by_default(tmp_path):
    stack = make_stack("embedded", tmp_path, fee_bps=FEE_BPS)
    chain = stack.chain
    store_file = Path(
        stack.config("seller").service_store_at(chain.chain_id, chain.marketplace.address)
    )
    store_file.parent.mkdir(parents=True)  # where `modex serve` keeps it without --state
    market = Market(stack, store_file)
    held = market.serve(100)
    code, out, err = stack.cli("seller", "worker", "--once")
    assert code == 0, err
    assert f"channel {market.channel_id}: claimed up to {held}" in out
    assert market.claimed_on_chain() == held
