"""ETH amounts (node.amounts): exact in both directions, past Decimal's 28 digits, and through the
command line. The refusals' sentences are checked where the app shows them (tests/app/test_units.py)."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from modex_stack import make_stack

from node.amounts import UINT256_MAX, fmt_eth, parse_eth
from node.errors import InputError, ModexError
from node.protocol import StakeInfo

# 29 significant digits: Decimal's default context rounded this to ...680 wei.
LONG_ETH = "12345678901.123456789012345678"
LONG_WEI = 12345678901123456789012345678


def test_the_28_digit_case_is_exact_both_ways():
    assert parse_eth(LONG_ETH) == LONG_WEI
    assert fmt_eth(LONG_WEI) == f"{LONG_ETH} ETH"


@pytest.mark.parametrize(
    "wei", [0, 1, 10**17, 10**18, 25 * 10**17, 10**30 + 1, LONG_WEI, UINT256_MAX]
)
def test_formatted_amounts_parse_back_to_the_same_wei(wei):
    assert parse_eth(fmt_eth(wei)) == wei


def test_formatting_keeps_no_trailing_zeros_and_signs_a_negative_amount():
    assert fmt_eth(0) == "0 ETH"
    assert fmt_eth(10**24) == "1000000 ETH"
    assert fmt_eth(-15 * 10**17) == "-1.5 ETH"


def test_numbers_that_are_not_text_are_read_too_and_a_missing_amount_is_refused():
    assert parse_eth(2) == 2 * 10**18
    assert parse_eth(Decimal("0.25")) == 25 * 10**16
    with pytest.raises(InputError, match="The --price '' is not a number"):
        parse_eth(None, "--price")


def test_a_bad_amount_is_an_input_error_that_names_the_value_and_is_a_value_error():
    with pytest.raises(InputError, match="The --stake 'lots' is not a number") as caught:
        parse_eth("lots", what="--stake")
    assert isinstance(caught.value, ModexError) and isinstance(caught.value, ValueError)
    assert caught.value.context == {"what": "--stake"}


def test_the_command_line_stakes_the_exact_wei_of_a_28_digit_amount(anvil, tmp_path):
    """`modex validate --once --stake 12345678901.123456789012345678`, run as the installed console
    script: the Validators contract holds exactly 12345678901123456789012345678 wei of stake."""
    stack = make_stack("anvil", tmp_path, anvil_url=anvil.url)
    validator = stack.signers["validator"].address
    stack.chain.w3.provider.make_request("anvil_setBalance", [validator, hex(2 * LONG_WEI)])
    modex = Path(sys.executable).parent / "modex"
    proc = subprocess.run(
        [str(modex), "validate", "--once", "--stake", LONG_ETH, *stack.args("validator")],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    staked = StakeInfo.from_call(
        stack.chain.call(stack.chain.validators.functions.stakeOf(validator))
    )
    assert staked.amount == LONG_WEI
    assert f"staked {LONG_ETH} ETH" in proc.stdout
