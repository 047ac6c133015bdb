"""Amounts in a token's symbol and decimals (node.amounts), and what a token that does not say
them is shown as (Chain.token): exact both ways, refusals in words, one read per token."""

from __future__ import annotations

import logging

import pytest
from eth_abi import encode

from node.amounts import (
    ETH,
    Token,
    describe_token,
    fmt_amount,
    fmt_period,
    fmt_subscription,
    parse_amount,
    parse_period,
)
from node.chain import Chain, embedded_web3
from node.deploy import deploy_suite
from node.errors import InputError

USD = Token("0x" + "ab" * 20, "mUSD", 6)
ADDRESS = "0x" + "11" * 20


@pytest.mark.parametrize(
    "text,amount",
    [("5", 5_000_000), ("5 mUSD", 5_000_000), ("0.000001", 1), ("1E+3", 10**9), ("0", 0)],
)
def test_an_amount_in_a_six_decimal_token_parses_and_formats_back(text, amount):
    assert parse_amount(text, USD) == amount
    assert parse_amount(fmt_amount(amount, USD), USD) == amount


def test_formatting_in_a_token_keeps_every_digit_and_no_trailing_zero():
    assert fmt_amount(5_000_000, USD) == "5 mUSD"
    assert fmt_amount(3_250_000, USD) == "3.25 mUSD"
    assert fmt_amount(1, USD) == "0.000001 mUSD"
    assert USD.format(12) == "0.000012 mUSD" and USD.parse("0.000012") == 12
    assert fmt_amount(10**18, ETH) == "1 ETH"
    assert fmt_amount(7, Token(ADDRESS, "WHOLE", 0)) == "7 WHOLE"


@pytest.mark.parametrize(
    "text,words",
    [
        ("0.0000001", "The price has more than 6 decimals; round it."),
        ("lots", "The price 'lots' is not a number; write it in mUSD, e.g. 0.1."),
        ("-1", "The price must be zero or more mUSD"),
        ("1e72", "(2^256 - 1 base units of mUSD)"),
    ],
)
def test_a_bad_amount_in_a_token_is_refused_in_its_words(text, words):
    with pytest.raises(InputError) as refused:
        parse_amount(text, USD, what="price")
    assert words in str(refused.value)


def test_the_largest_amount_a_six_decimal_token_can_hold_is_read_exactly():
    largest = 2**256 - 1
    assert parse_amount(fmt_amount(largest, USD), USD) == largest
    with pytest.raises(InputError, match="larger than any amount"):
        parse_amount(fmt_amount(largest, USD).replace("935 ", "936 "), USD)


def test_a_token_is_described_by_its_string_or_bytes32_symbol_and_its_decimals():
    usdc = describe_token(ADDRESS, encode(["string"], ["USDC"]), encode(["uint8"], [6]))
    assert usdc == Token(ADDRESS, "USDC", 6, described=True)
    maker = describe_token(ADDRESS, b"MKR".ljust(32, b"\0"), encode(["uint256"], [18]))
    assert maker == Token(ADDRESS, "MKR", 18, described=True)


@pytest.mark.parametrize(
    "symbol,decimals,shown,places",
    [
        (None, None, "0x1111…1111", 18),  # no answer at all (no contract, or a revert)
        (encode(["string"], ["X" * 40]), encode(["uint8"], [6]), "0x1111…1111", 6),
        (encode(["string"], ["a\nb"]), encode(["uint8"], [6]), "0x1111…1111", 6),
        (encode(["string"], ["DAI"]), encode(["uint256"], [200]), "DAI", 18),
        (b"\xff" * 32, b"", "0x1111…1111", 18),
    ],
)
def test_a_token_that_does_not_say_its_symbol_or_decimals_gets_a_fallback_and_a_warning(
    symbol, decimals, shown, places, caplog
):
    with caplog.at_level(logging.WARNING, logger="node.amounts"):
        token = describe_token(ADDRESS, symbol, decimals)
    assert (token.symbol, token.decimals, token.described) == (shown, places, False)
    assert f"the token at {ADDRESS} does not answer" in caplog.text


def test_the_chain_client_reads_a_token_once_and_names_a_contract_without_symbol_by_address(
    caplog,
):
    w3 = embedded_web3()
    chain = Chain(w3, deploy_suite(w3, w3.eth.accounts[0]))
    assert chain.token(None) is ETH and chain.token("0x" + "00" * 20) is ETH
    votes = chain.votes.address  # a contract with no symbol() or decimals()
    with caplog.at_level(logging.WARNING, logger="node.amounts"):
        token = chain.token(votes.lower())
        assert chain.token(votes) is token  # read once, by checksummed address
    assert token == Token(votes, f"{votes[:6]}…{votes[-4:]}", 18, described=False)
    assert caplog.text.count("does not answer symbol() and decimals()") == 1
    nobody = chain.token(w3.eth.accounts[5])  # no contract at all
    assert nobody.symbol == f"{w3.eth.accounts[5][:6]}…{w3.eth.accounts[5][-4:]}"


def test_periods_read_and_shown_in_whole_units():
    assert parse_period("30d") == 30 * 86400 and fmt_period(30 * 86400) == "30 days"
    assert parse_period("12 hours") == 12 * 3600 and fmt_period(3600) == "1 hour"
    assert parse_period("1w") == 7 * 86400 and parse_period("3600") == 3600
    assert fmt_period(90 * 60) == "90 minutes" and fmt_period(61) == "61 seconds"
    assert fmt_subscription(5_000_000, 30 * 86400, USD) == "5 mUSD per 30 days"
    for bad in ("0", "soon", "5 years", "-1d", ""):
        with pytest.raises(InputError, match="is not a period"):
            parse_period(bad, what="--subscription")
    with pytest.raises(InputError, match="longer than the registry keeps"):
        parse_period("100000w")
