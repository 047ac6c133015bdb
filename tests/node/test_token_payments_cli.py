"""A model priced in an ERC-20 token, through `modex` as seller and buyer on the embedded chain:
published in the test stablecoin, refused in words with nothing sent when the buyer holds too
little, bought (approved for exactly the price, then bought), delivered by the seller's worker,
released after the challenge period and withdrawn in the token; the index and `modex models`
show the price in the token."""

from __future__ import annotations

import json

import pytest
from cli_results import ok, refused
from modex_stack import make_stack, write_model
from token_helpers import balance, mint, stablecoin_stack

from node import tokens
from node.amounts import ETH
from node.indexer import Indexer

FEE_BPS = 250
CHALLENGE = 300
PRICE = 5_000_000  # 5 mUSD


@pytest.fixture
def stack(tmp_path):
    return stablecoin_stack(
        tmp_path, fee_bps=FEE_BPS, delivery_window=3600, challenge_period=CHALLENGE
    )


def publishing(stack, folder, *options: str):
    """`modex publish` of a new model folder as the seller; (code, stdout, stderr)."""
    return stack.cli("seller", "publish", str(write_model(folder)), *options)


def published(stack, tmp_path, *options: str) -> int:
    return json.loads(ok(publishing(stack, tmp_path / "m", "--json", *options)))["model_id"]


def nonce(stack, role: str) -> int:
    return stack.chain.w3.eth.get_transaction_count(stack.signers[role].address)


def test_a_model_priced_in_a_token_is_bought_delivered_released_and_withdrawn_in_it(
    stack, tmp_path
):
    usd = tokens.stablecoin(stack.chain)
    refused(
        publishing(stack, tmp_path / "m", "--price", "0.0000001", "--token", usd.address),
        "The --price has more than 6 decimals; round it.",
    )
    model_id = published(stack, tmp_path, "--price", "5", "--stablecoin")
    assert tokens.payment_token(stack.chain, model_id) == usd
    assert stack.chain.call(stack.chain.registry.functions.price(model_id)) == PRICE

    # Too little: refused in words, before anything is sent (no approve, no buy).
    mint(stack, "buyer", 3_000_000)
    sent = nonce(stack, "buyer")
    refused(
        stack.cli("buyer", "buy", str(model_id), "--wait", "0"),
        f"insufficient funds: {stack.signers['buyer'].address} holds 3 mUSD but model "
        f"{model_id} costs 5 mUSD; get 2 mUSD more into the account (nothing was sent)",
    )
    assert nonce(stack, "buyer") == sent
    assert tokens.allowance(stack.chain, stack.signers["buyer"].address, usd) == 0

    # Enough: approved for exactly the price, then bought; the Marketplace holds the price.
    mint(stack, "buyer", 4_000_000)
    out = ok(stack.cli("buyer", "buy", str(model_id), "--wait", "0", "--max-price", "5 mUSD"))
    assert f"paid 5 mUSD for model {model_id}" in out
    pid = int(out.split()[1].rstrip(":"))
    assert nonce(stack, "buyer") == sent + 2  # approve, buy
    assert balance(stack, usd, "buyer") == 2_000_000
    assert tokens.allowance(stack.chain, stack.signers["buyer"].address, usd) == 0
    assert stack.chain.balance_in(usd, stack.chain.marketplace.address) == PRICE

    # The seller's worker delivers the key as for an ETH sale.
    assert f"delivered 1 key(s) [{pid}]" in ok(stack.cli("seller", "worker", "--once"))

    # The index and `modex models` count it in the token.
    index = Indexer(stack.chain, tmp_path / "index.sqlite3")
    index.sync()
    listing = index.get_model(model_id)
    assert listing["token"] == {
        "address": usd.address,
        "symbol": "mUSD",
        "decimals": 6,
        "described": True,
    }
    assert listing["price"] == PRICE and listing["price_text"] == "5 mUSD"
    (purchase,) = index.purchases_of(stack.signers["buyer"].address)
    assert purchase["token"]["symbol"] == "mUSD" and purchase["price_text"] == "5 mUSD"
    assert [t.symbol for t in index.payment_tokens()] == ["ETH", "mUSD"]
    table = ok(stack.cli("buyer", "models")).splitlines()
    assert "5 mUSD" in next(line for line in table if line.startswith(str(model_id)))

    # Held for the challenge period, then released and withdrawn in the token, named.
    refused(stack.cli("seller", "withdraw"), "4.875 mUSD from 1 sale is held until")
    stack.time_travel(CHALLENGE + 1)
    out = ok(stack.cli("seller", "withdraw"))
    assert "released 1 sale(s) past their challenge period (4.875 mUSD)" in out
    assert f"withdrew 4.875 mUSD to {stack.signers['seller'].address}" in out
    assert balance(stack, usd, "seller") == 4_875_000
    # The fee is the fee recipient's (the deployer), in the token too.
    fees = stack.chain.marketplace.functions.credited(stack.chain.w3.eth.accounts[0], usd.address)
    assert stack.chain.call(fees) == 125_000
    refused(
        stack.cli("seller", "withdraw", "--token", usd.address),
        f"{stack.signers['seller'].address} has nothing to withdraw yet. Nothing was sent.",
    )


def test_a_price_in_an_unknown_or_missing_token_is_refused_before_anything_is_listed(tmp_path):
    stack = make_stack("embedded", tmp_path)  # no stablecoin
    sent = nonce(stack, "seller")
    refused(
        publishing(
            stack, tmp_path / "m", "--price", "5", "--token", stack.signers["buyer"].address
        ),
        f"There is no contract at {stack.signers['buyer'].address}",
    )
    refused(
        stack.cli("seller", "publish", str(tmp_path / "m"), "--price", "5", "--token", "usd"),
        "The --token 'usd' is not an address",
    )
    refused(
        stack.cli("seller", "publish", str(tmp_path / "m"), "--price", "5", "--stablecoin"),
        "has no test stablecoin",
    )
    assert nonce(stack, "seller") == sent


def test_an_undelivered_purchase_in_a_token_is_refunded_and_withdrawn_in_it(stack, tmp_path):
    usd = tokens.stablecoin(stack.chain)
    model_id = published(stack, tmp_path, "--price", "5", "--token", usd.address)
    mint(stack, "buyer", PRICE)
    out = ok(stack.cli("buyer", "buy", str(model_id), "--wait", "0"))
    pid = int(out.split()[1].rstrip(":"))
    assert balance(stack, usd, "buyer") == 0
    stack.time_travel(3600 + 1)  # the delivery window passes without the seller's worker
    out = ok(stack.cli("buyer", "refund", str(pid)))
    assert f"purchase {pid} refunded: 5 mUSD credited to you" in out
    out = ok(stack.cli("buyer", "withdraw"))
    assert f"withdrew 5 mUSD to {stack.signers['buyer'].address}" in out
    assert "ETH" not in out  # nothing credited in ETH: not named
    assert balance(stack, usd, "buyer") == PRICE


def test_approvals_raise_a_short_allowance_to_exactly_the_amount_through_zero(stack):
    """What `pay` sends (and a browser wallet would sign) before a payment in a token: nothing
    when the allowance suffices; approve(amount); approve(0) first when a smaller allowance is
    left (tokens such as USDT refuse to change one non-zero allowance to another)."""
    usd, buyer = tokens.stablecoin(stack.chain), stack.signers["buyer"]
    market = stack.chain.marketplace.address

    def planned() -> list[tuple]:
        calls = tokens.approvals(stack.chain, buyer.address, usd, PRICE)
        return [(c.fn_name, *c.args) for c in calls]

    assert tokens.approvals(stack.chain, buyer.address, ETH, PRICE) == []
    assert planned() == [("approve", market, PRICE)]
    approve = stack.chain.erc20(usd.address).functions.approve
    stack.chain.transact(approve(market, 1), buyer)
    assert planned() == [("approve", market, 0), ("approve", market, PRICE)]
    stack.chain.transact(approve(market, PRICE), buyer)
    assert planned() == []
