"""ETH amounts: the one place text becomes wei and wei becomes text.

``parse_eth("0.2")`` is 200000000000000000 wei and ``fmt_eth(200000000000000000)`` is
``"0.2 ETH"``. Both are exact for every amount a contract can hold: integer arithmetic on the
digits, never a float and never Decimal's 28-digit context (which turned
12345678901.123456789012345678 ETH into 12345678901123456789012345680 wei). The command line,
the web app and the node's own sentences all use these two functions.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from node.errors import InputError

WEI_PER_ETH = 10**18
UINT256_MAX = 2**256 - 1
# Amounts at or above this many ETH exceed a uint256 whatever their decimals; comparing against it
# before any power of ten is taken keeps "1e999999" from building a million-digit integer.
ETH_BEYOND_UINT256 = 10**60


def parse_eth(text: str | int | Decimal | None, what: str = "amount") -> int:
    """An amount of ETH as a person writes it ("0.2", " 2.5 ETH", "1E+3") -> wei.

    ``what`` names the value in the error ("price", "--stake"). Raises InputError for junk, a
    negative or infinite amount, more than 18 decimals (less than 1 wei) and more than a uint256
    holds."""
    raw = ("" if text is None else str(text)).strip().removesuffix("ETH").strip()
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise InputError(
            f"The {what} '{raw[:40]}' is not a number; write it in ETH, e.g. 0.1.", what=what
        ) from None
    if not value.is_finite() or value < 0:
        raise InputError(f"The {what} must be zero or more ETH, e.g. 0.1.", what=what)
    too_large = InputError(
        f"The {what} is larger than any amount a contract can hold "
        "(2^256 - 1 wei); write a real amount in ETH, e.g. 0.1.",
        what=what,
    )
    if value >= ETH_BEYOND_UINT256:
        raise too_large
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # an int for every finite value (checked above)
    coefficient = int("".join(map(str, digits)) or "0")
    if coefficient == 0:
        return 0
    shift = exponent + 18  # wei = coefficient * 10**shift
    if shift >= 0:
        wei = coefficient * 10**shift
    else:
        # More places after the point than the coefficient has digits: below 1 wei for sure.
        wei, rest = divmod(coefficient, 10**-shift) if -shift <= len(digits) else (0, 1)
        if rest:
            raise InputError(f"The {what} has more than 18 decimals; round it.", what=what)
    if wei > UINT256_MAX:
        raise too_large
    return wei


def fmt_eth(wei: int) -> str:
    """Wei as ETH for a person: ``0.2 ETH``, ``1 ETH``, ``0.000000000000000001 ETH`` (no trailing
    zeros, every digit kept)."""
    sign = "-" if int(wei) < 0 else ""
    whole, fraction = divmod(abs(int(wei)), WEI_PER_ETH)
    text = f"{whole}.{fraction:018d}".rstrip("0").rstrip(".")
    return f"{sign}{text} ETH"
