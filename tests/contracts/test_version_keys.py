"""Marketplace.deliverVersionKeys (issue 15 §1): a later version's key reaches the licence holders
entitled to it by the model's update window, once each, and a batch with any bad entry is refused
whole. The node's side (the worker wrapping and sending these batches, `modex fetch --version`) is
tested in tests/node/test_version_keys_journey.py."""

from __future__ import annotations

import pytest

from node.versions import FOREVER
from tests.contracts.conftest import WRAPPED

V2_HASH = bytes.fromhex("44" * 32)
V2_CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
DAY = 86400


@pytest.fixture
def sale(chain):
    """A model of accounts[1] with a licence delivered to accounts[2]; returns (chain, model, seller,
    holder)."""
    seller, holder = chain.accounts[1], chain.accounts[2]
    model_id = chain.list_model(seller)
    chain.deliver(seller, chain.buy(holder, model_id))
    return chain, model_id, seller, holder


def publish(chain, seller, model_id: int) -> int:
    receipt = chain.send(chain.registry.functions.publishVersion(model_id, V2_HASH, V2_CID), seller)
    return chain.events(receipt, chain.registry, "VersionPublished")[0]["version"]


def set_window(chain, seller, model_id: int, seconds: int) -> None:
    chain.send(chain.registry.functions.setUpdateWindow(model_id, seconds), seller)


def deliver(chain, sender, model_id, version, accounts, keys=None):
    call = chain.market.functions.deliverVersionKeys(
        model_id, version, accounts, keys if keys is not None else [WRAPPED] * len(accounts)
    )
    return call, sender


def delivered(chain, model_id, version, account) -> bool:
    return chain.market.functions.versionKeyDelivered(model_id, version, account).call()


def entitled(chain, model_id, version, account) -> bool:
    return chain.market.functions.entitledTo(model_id, version, account).call()


def test_an_entitled_holder_receives_the_new_versions_key_once(sale):
    chain, model_id, seller, holder = sale
    set_window(chain, seller, model_id, 30 * DAY)
    chain.travel(DAY)
    version = publish(chain, seller, model_id)
    assert version == 2
    assert entitled(chain, model_id, 2, holder) and not delivered(chain, model_id, 2, holder)

    receipt = chain.send(*deliver(chain, seller, model_id, 2, [holder]))
    assert chain.events(receipt, chain.market, "VersionKeyDelivered") == [
        {"modelId": model_id, "version": 2, "account": holder, "wrappedKey": WRAPPED}
    ]
    assert delivered(chain, model_id, 2, holder)
    assert not delivered(chain, model_id, 3, holder), "one bit per version"

    chain.expect_revert_with(
        *deliver(chain, seller, model_id, 2, [holder]),
        "MarketplaceVersionKeyAlreadyDelivered",
        (model_id, 2, holder),
    )
    # the same account twice in one batch is refused too (the first entry's bit is already set)
    other = chain.accounts[3]
    chain.deliver(seller, chain.buy(other, model_id))
    publish(chain, seller, model_id)
    chain.expect_revert(
        *deliver(chain, seller, model_id, 3, [other, other]),
        "MarketplaceVersionKeyAlreadyDelivered",
        account=other,
    )


def test_the_operator_may_deliver_and_a_stranger_may_not(sale):
    chain, model_id, seller, holder = sale
    operator, stranger = chain.accounts[4], chain.accounts[5]
    chain.send(chain.registry.functions.setOperator(model_id, operator), seller)
    set_window(chain, seller, model_id, FOREVER)
    publish(chain, seller, model_id)
    chain.expect_revert_with(
        *deliver(chain, stranger, model_id, 2, [holder]),
        "MarketplaceNotVersionDeliverer",
        (model_id, stranger),
    )
    chain.send(*deliver(chain, operator, model_id, 2, [holder]))
    assert delivered(chain, model_id, 2, holder)


def test_a_version_published_after_the_window_is_refused(sale):
    chain, model_id, seller, holder = sale
    set_window(chain, seller, model_id, DAY)
    chain.travel(2 * DAY)
    publish(chain, seller, model_id)
    assert not entitled(chain, model_id, 2, holder)
    err = chain.expect_revert(
        *deliver(chain, seller, model_id, 2, [holder]),
        "MarketplaceNotEntitled",
        modelId=model_id,
        version=2,
        account=holder,
        window=DAY,
    )
    args = err.context["args"]
    assert args["publishedAt"] - args["deliveredAt"] > DAY
    assert "update window is 86400 s after each purchase" in str(err)


def test_window_zero_keeps_the_version_bought_and_forever_every_version(sale):
    chain, model_id, seller, holder = sale
    chain.travel(10)
    publish(chain, seller, model_id)  # the default window is 0
    assert not entitled(chain, model_id, 2, holder)
    chain.expect_revert(
        *deliver(chain, seller, model_id, 2, [holder]), "MarketplaceNotEntitled", window=0
    )
    set_window(chain, seller, model_id, FOREVER)
    chain.travel(3650 * DAY)
    publish(chain, seller, model_id)
    assert entitled(chain, model_id, 3, holder) and entitled(chain, model_id, 2, holder)
    chain.send(*deliver(chain, seller, model_id, 3, [holder]))  # no overflow at type(uint256).max
    assert delivered(chain, model_id, 3, holder)


def test_refunded_and_pending_purchases_and_validators_hold_no_licence(sale):
    chain, model_id, seller, holder = sale
    set_window(chain, seller, model_id, FOREVER)
    pending, refunded = chain.accounts[3], chain.accounts[4]
    chain.buy(pending, model_id)
    refunded_id = chain.buy(refunded, model_id)
    chain.travel(chain.params["delivery_window"] + 1)
    chain.send(chain.market.functions.refund(refunded_id), refunded)
    publish(chain, seller, model_id)
    for account in (pending, refunded):
        assert not entitled(chain, model_id, 2, account)
        # the good holder first: the bad entry reverts the whole batch, the holder's delivery with it
        chain.expect_revert_with(
            *deliver(chain, seller, model_id, 2, [holder, account]),
            "MarketplaceNoLicence",
            (model_id, account),
        )
    assert not delivered(chain, model_id, 2, holder)

    validator = chain.accounts[6]
    chain.stake(validator)
    chain.key(validator, model_id, seller)  # a validator's delivered key grants no licence
    chain.expect_revert_with(
        *deliver(chain, seller, model_id, 2, [validator]),
        "MarketplaceNoLicence",
        (model_id, validator),
    )


def test_a_key_of_the_wrong_length_or_a_batch_out_of_step_is_refused(sale):
    chain, model_id, seller, holder = sale
    set_window(chain, seller, model_id, FOREVER)
    publish(chain, seller, model_id)
    chain.expect_revert_with(
        *deliver(chain, seller, model_id, 2, [holder], [WRAPPED[:79]]),
        "MarketplaceBadWrappedKey",
        (79, 80),
    )
    chain.expect_revert_with(
        *deliver(chain, seller, model_id, 2, [holder], [WRAPPED, WRAPPED]),
        "MarketplaceBatchMismatch",
        (1, 2),
    )


def test_version_one_and_an_unknown_version_are_refused(sale):
    chain, model_id, seller, holder = sale
    set_window(chain, seller, model_id, FOREVER)
    chain.expect_revert_with(
        *deliver(chain, seller, model_id, 1, [holder]),
        "MarketplaceNotNewVersion",
        (model_id, 1),
    )
    chain.expect_revert_with(
        *deliver(chain, seller, model_id, 2, [holder]),
        "ModelRegistryNoSuchVersion",
        (model_id, 2, 1),
    )
    assert entitled(chain, model_id, 1, holder), "version 1 is what every licence opens"
