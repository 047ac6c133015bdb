"""Amounts: the one place text becomes an integer amount and an integer amount becomes text, in
ETH or in an ERC-20 token.

``parse_eth("0.2")`` is 200000000000000000 wei and ``fmt_eth(200000000000000000)`` is
``"0.2 ETH"``; ``parse_amount("5", usd)`` and ``fmt_amount(5_000_000, usd)`` do the same in a
token's symbol and decimals (``Token``; ``ETH`` is the native coin, 18 decimals). Every
conversion is exact for every amount a contract can hold: integer arithmetic on the digits, never
a float and never Decimal's 28-digit context (which turned 12345678901.123456789012345678 ETH
into 12345678901123456789012345680 wei). The command line, the web app and the node's own
sentences all use these functions.

A token's symbol and decimals come from its own ``symbol()`` and ``decimals()``: the chain client
reads them once per token (``node.chain.Chain.token``) and ``describe_token`` makes a Token of
its answers. A token that does not answer them (or answers nonsense) is named by its short
address and counted with 18 decimals, with a warning: its amounts are then shown in its base
units / 10^18, which may not be what its own interface shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from node.errors import InputError
from node.protocol import ETH_TOKEN

log = logging.getLogger(__name__)

UINT256_MAX = 2**256 - 1
# 2^256 - 1 has 78 digits: an amount at or above 10^(78 - decimals) whole units exceeds a uint256
# whatever its digits; comparing against it before any power of ten is taken keeps "1e999999"
# from building a million-digit integer.
UINT256_DIGITS = 78
# What a token's symbol may be for a person to read it: printable, short.
MAX_SYMBOL_LENGTH = 16
DEFAULT_DECIMALS = 18  # a token that does not say its decimals is counted like ETH


@dataclass(frozen=True)
class Token:
    """What an amount is counted in: the native coin (``ETH``, address zero, as the contracts
    name it) or the ERC-20 token at ``address`` (checksummed), with its symbol and decimals.
    ``described`` is False when the token did not say its symbol or decimals and a fallback
    stands in (``describe_token``)."""

    address: str
    symbol: str
    decimals: int
    described: bool = True

    @property
    def is_eth(self) -> bool:
        return int(self.address, 16) == 0

    @property
    def unit(self) -> str:
        """The name of its smallest unit, for sentences ("wei", "base units of mUSD")."""
        return "wei" if self.is_eth else f"base units of {self.symbol}"

    def format(self, amount: int) -> str:
        return fmt_amount(amount, self)

    def parse(self, text: str | int | Decimal | None, what: str = "amount") -> int:
        return parse_amount(text, self, what)


ETH = Token(ETH_TOKEN, "ETH", 18)


def short_address(address: str) -> str:
    """``0x1234…abcd``: a token without a symbol is named by this."""
    return f"{address[:6]}…{address[-4:]}"


def parse_amount(text: str | int | Decimal | None, token: Token = ETH, what: str = "amount") -> int:
    """An amount of ``token`` as a person writes it ("0.2", " 2.5 ETH", "5 mUSD", "1E+3") -> its
    integer amount (wei for ETH, base units for a token).

    ``what`` names the value in the error ("price", "--stake"). Raises InputError for junk, a
    negative or infinite amount, more decimals than the token has (less than one base unit) and
    more than a uint256 holds."""
    symbol = token.symbol
    raw = ("" if text is None else str(text)).strip().removesuffix(symbol).strip()
    example = f"write it in {symbol}, e.g. 0.1."
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise InputError(f"The {what} '{raw[:40]}' is not a number; {example}", what=what) from None
    if not value.is_finite() or value < 0:
        raise InputError(f"The {what} must be zero or more {symbol}, e.g. 0.1.", what=what)
    too_large = InputError(
        f"The {what} is larger than any amount a contract can hold "
        f"(2^256 - 1 {token.unit}); {example}",
        what=what,
    )
    if value >= 10 ** (UINT256_DIGITS - token.decimals):
        raise too_large
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # an int for every finite value (checked above)
    coefficient = int("".join(map(str, digits)) or "0")
    if coefficient == 0:
        return 0
    shift = exponent + token.decimals  # amount = coefficient * 10**shift
    if shift >= 0:
        amount = coefficient * 10**shift
    else:
        # More places after the point than the coefficient has digits: below 1 unit for sure.
        amount, rest = divmod(coefficient, 10**-shift) if -shift <= len(digits) else (0, 1)
        if rest:
            raise InputError(
                f"The {what} has more than {token.decimals} decimals; round it.", what=what
            )
    if amount > UINT256_MAX:
        raise too_large
    return amount


def fmt_amount(amount: int, token: Token = ETH) -> str:
    """An integer amount of ``token`` for a person: ``0.2 ETH``, ``5 mUSD``, ``0.000001 mUSD``
    (no trailing zeros, every digit kept)."""
    sign = "-" if int(amount) < 0 else ""
    whole, fraction = divmod(abs(int(amount)), 10**token.decimals)
    text = f"{whole}.{fraction:0{token.decimals}d}".rstrip("0").rstrip(".")
    return f"{sign}{text} {token.symbol}"


def parse_eth(text: str | int | Decimal | None, what: str = "amount") -> int:
    """An amount of ETH as a person writes it ("0.2", " 2.5 ETH", "1E+3") -> wei
    (``parse_amount`` in ETH)."""
    return parse_amount(text, ETH, what)


def fmt_eth(wei: int) -> str:
    """Wei as ETH for a person: ``0.2 ETH``, ``1 ETH``, ``0.000000000000000001 ETH``."""
    return fmt_amount(wei, ETH)


def describe_token(address: str, symbol: bytes | None, decimals: bytes | None) -> Token:
    """The Token at ``address`` from the raw answers of its ``symbol()`` and ``decimals()`` (None:
    the call reverted or the address holds no contract). A symbol may be an ABI string or, in
    older tokens, a bytes32; one that is neither, empty, unprintable or longer than
    MAX_SYMBOL_LENGTH is replaced by the short address, and decimals that are not a number below
    78 by DEFAULT_DECIMALS, each with a warning."""
    name = _symbol_of(symbol)
    places = _decimals_of(decimals)
    if name is None or places is None:
        missing = " and ".join(
            what for what, value in (("symbol()", name), ("decimals()", places)) if value is None
        )
        log.warning(
            "the token at %s does not answer %s as an ERC-20 token does: it is shown as %s "
            "with %d decimals",
            address,
            missing,
            name or short_address(address),
            DEFAULT_DECIMALS if places is None else places,
        )
    if name is None and places is None:
        return undescribed_token(address)
    return Token(
        address,
        name or short_address(address),
        DEFAULT_DECIMALS if places is None else places,
        described=name is not None and places is not None,
    )


def undescribed_token(address: str) -> Token:
    """The stand-in for a token whose symbol and decimals are not known: its short address, 18
    decimals."""
    return Token(address, short_address(address), DEFAULT_DECIMALS, described=False)


def _symbol_of(answer: bytes | None) -> str | None:
    if not answer:
        return None
    text = None
    if len(answer) >= 64 and int.from_bytes(answer[:32], "big") == 32:
        length = int.from_bytes(answer[32:64], "big")
        if length <= len(answer) - 64:
            text = answer[64 : 64 + length]
    elif len(answer) == 32:  # bytes32, right-padded with zeros (MKR, SAI)
        text = answer.rstrip(b"\x00")
    try:
        symbol = text.decode("utf-8").strip() if text is not None else ""
    except UnicodeDecodeError:
        return None
    if not symbol or len(symbol) > MAX_SYMBOL_LENGTH or not symbol.isprintable():
        return None
    return symbol


def _decimals_of(answer: bytes | None) -> int | None:
    if not answer or len(answer) < 32:
        return None
    value = int.from_bytes(answer[:32], "big")
    return value if value < UINT256_DIGITS else None


# Subscription periods: a whole number and a unit, the largest unit that divides it shown.
PERIOD_UNITS = (("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
UINT32_MAX = 2**32 - 1  # ModelRegistry keeps a period in a uint32 of seconds


def fmt_period(seconds: int) -> str:
    """A period for a person: ``30 days``, ``1 hour``, ``90 minutes``."""
    for name, size in PERIOD_UNITS:
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {name}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def parse_period(text: str | None, what: str = "period") -> int:
    """A period as a person writes it ("30d", "12 hours", "1w", "3600": seconds) -> seconds,
    more than 0 and at most what a uint32 holds; InputError otherwise."""
    raw = ("" if text is None else str(text)).strip().lower()
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz ").strip()
    unit = raw[len(number) :].strip()
    sizes = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    sizes.update({name: size for name, size in PERIOD_UNITS})
    size = sizes.get(unit.removesuffix("s") if len(unit) > 3 else unit)
    if size is None or not number.isdigit() or int(number) == 0:
        raise InputError(
            f"The {what} '{raw[:40]}' is not a period: write a whole number of seconds, minutes, "
            "hours, days or weeks, e.g. 30d, 12h or 3600.",
            what=what,
        )
    seconds = int(number) * size
    if seconds > UINT32_MAX:
        raise InputError(
            f"The {what} is longer than the registry keeps ({UINT32_MAX} seconds, about 136 "
            "years); write a shorter one, e.g. 30d.",
            what=what,
        )
    return seconds


def fmt_subscription(price: int, period: int, token: Token = ETH) -> str:
    """A subscription's terms for a person: ``5 mUSD per 30 days``."""
    return f"{fmt_amount(price, token)} per {fmt_period(period)}"
