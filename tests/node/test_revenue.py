"""A sale's revenue is held for the challenge period, and a dispute within it refunds the buyer.

Through `modex` as seller and buyers on the embedded stack (time travel over the periods):
`modex withdraw` releases the sales past their challenge period, withdraws, and says what is
still held and until when (or, with nothing credited, why nothing was sent); `modex refund`
refunds a delivered purchase whose model validators disputed within its challenge period, and
says why (and until when) it cannot otherwise; `modex vote` reports the price-weighted score.
"""

from __future__ import annotations

import pytest
from cli_results import ok, refused
from modex_stack import make_stack, publish_model, settle_validation, write_model

from node.protocol import ModelStatus, Purchase, PurchaseStatus

PRICE = 10**16  # 0.01 ETH
FEE_BPS = 250
CHALLENGE = 300
NET = "0.00975 ETH"  # the price less the 2.5 % fee


@pytest.fixture
def stack(tmp_path):
    return make_stack(
        "embedded", tmp_path, fee_bps=FEE_BPS, delivery_window=3600, challenge_period=CHALLENGE
    )


def bought(stack, role: str, model_id: int) -> int:
    """``role`` buys ``model_id`` through `modex buy` and the seller's worker delivers it."""
    out = ok(stack.cli(role, "buy", str(model_id), "--wait", "0"))
    pid = int(out.split()[1].rstrip(":"))
    assert f"delivered 1 key(s) [{pid}]" in ok(stack.cli("seller", "worker", "--once"))
    return pid


def record(stack, pid: int) -> Purchase:
    return Purchase.from_call(stack.chain.call(stack.chain.marketplace.functions.purchase(pid)))


def validated(stack, model_id: int, outcome: ModelStatus) -> ModelStatus:
    """A validation round of the seller's model settled by the stack's validator with
    ``outcome``; returns the model's status after it."""
    return settle_validation(
        stack.chain,
        model_id,
        owner=stack.signers["seller"],
        validator=stack.signers["validator"],
        outcome=outcome,
    )


def credited(stack, role: str) -> int:
    market = stack.chain.marketplace.functions
    return stack.chain.call(market.credited(stack.signers[role].address))


def test_withdraw_releases_the_sales_past_their_challenge_period_and_says_what_is_held(
    stack, tmp_path
):
    model_id = publish_model(stack, write_model(tmp_path / "m"), price=PRICE)
    first = bought(stack, "buyer", model_id)
    # Held: nothing is credited yet, nothing is sent, and the sentence says until when.
    err = refused(
        stack.cli("seller", "withdraw"),
        "has nothing to withdraw yet",
        f"{NET} from 1 sale is held until",
        "UTC",
        "challenge period",
    )
    assert credited(stack, "seller") == 0 and "Nothing was sent" in err
    stack.time_travel(200)
    second = bought(stack, "buyer2", model_id)
    stack.time_travel(150)  # the first sale's period is over (350 s), the second's is not (150 s)
    before = stack.chain.balance(stack.signers["seller"].address)
    out = ok(stack.cli("seller", "withdraw"))
    assert f"released 1 sale(s) past their challenge period ({NET})" in out
    assert f"withdrew {NET}" in out
    assert f"still held: {NET} from 1 sale is held until" in out
    assert record(stack, first).released and not record(stack, second).released
    assert credited(stack, "seller") == 0
    assert before < stack.chain.balance(stack.signers["seller"].address) < before + PRICE  # gas
    # The fee went to the fee recipient with the release, not to the seller.
    market = stack.chain.marketplace.functions
    assert (
        stack.chain.call(market.credited(stack.chain.call(market.feeRecipient())))
        == PRICE * FEE_BPS // 10_000
    )
    stack.time_travel(CHALLENGE)
    out = ok(stack.cli("seller", "withdraw"))
    assert "released 1 sale(s)" in out and f"withdrew {NET}" in out and "still held" not in out
    refused(stack.cli("seller", "withdraw"), "has nothing to withdraw yet")


def test_a_delivered_purchase_is_refunded_when_validators_dispute_its_model_in_time(
    stack, tmp_path
):
    model_id = publish_model(stack, write_model(tmp_path / "m"), price=PRICE)
    pid = bought(stack, "buyer", model_id)
    out = ok(stack.cli("buyer", "vote", str(model_id), "5"))
    assert "its score is now 5.00 from 1 voter(s), weighted by the price each paid" in out
    # Delivered and undisputed: refused before anything is sent, saying until when it could be.
    refused(
        stack.cli("buyer", "refund", str(pid)),
        f"Purchase {pid} was delivered; it becomes refundable only if validators dispute "
        f"model {model_id} before",
        "(its challenge period). Nothing was sent.",
    )
    assert validated(stack, model_id, ModelStatus.METRICS_DISPUTED) == ModelStatus.METRICS_DISPUTED
    # The seller is told this sale will not be paid out: its buyer can refund it.
    refused(
        stack.cli("seller", "withdraw"),
        "has nothing to withdraw yet",
        f"1 sale ({NET}) of models validators disputed within their challenge period will "
        "not be paid out",
    )
    before = credited(stack, "buyer")
    out = ok(stack.cli("buyer", "refund", str(pid)))
    assert f"purchase {pid} refunded" in out
    assert credited(stack, "buyer") == before + PRICE  # the whole price back
    assert record(stack, pid).status == PurchaseStatus.REFUNDED
    chain = stack.chain
    assert not chain.call(
        chain.marketplace.functions.hasLicense(model_id, stack.signers["buyer"].address)
    )
    assert tuple(chain.call(chain.votes.functions.scoreOf(model_id))) == (0, 0, 0)  # vote dropped
    refused(stack.cli("buyer", "refund", str(pid)), f"Purchase {pid} was already refunded")
    assert "withdrew 0.01 ETH" in ok(stack.cli("buyer", "withdraw"))


def test_a_dispute_after_the_challenge_period_leaves_the_sale_final(stack, tmp_path):
    model_id = publish_model(stack, write_model(tmp_path / "m"), price=PRICE)
    pid = bought(stack, "buyer", model_id)
    stack.time_travel(CHALLENGE + 1)
    validated(stack, model_id, ModelStatus.DISPUTED)
    refused(
        stack.cli("buyer", "refund", str(pid)),
        f"after the challenge period of purchase {pid} ended",
        "the sale is final",
    )
    out = ok(stack.cli("seller", "withdraw"))  # released: the dispute came after its period
    assert "released 1 sale(s)" in out and f"withdrew {NET}" in out
    assert record(stack, pid).released


def test_a_pending_purchase_says_when_it_can_be_refunded(stack, tmp_path):
    model_id = publish_model(stack, write_model(tmp_path / "m"), price=PRICE)
    out = ok(stack.cli("buyer", "buy", str(model_id), "--wait", "0"))  # nobody delivers
    pid = int(out.split()[1].rstrip(":"))
    refused(
        stack.cli("buyer", "refund", str(pid)),
        f"Purchase {pid} can still be delivered until",
        "UTC; a refund is possible only after that",
    )
    refused(
        stack.cli("buyer2", "refund", str(pid)),
        f"Purchase {pid} is not yours: only its buyer, {stack.signers['buyer'].address}, can "
        "refund it",
    )
    refused(stack.cli("buyer", "refund", "999"), "There is no purchase 999")
    stack.time_travel(3601)
    assert f"purchase {pid} refunded" in ok(stack.cli("buyer", "refund", str(pid)))
