"""Pay-per-call payment channels (contracts/Channels.sol): the buyer's voucher and the chain client.

A buyer deposits ETH or the model's ERC-20 in a channel for one model (``openChannel``). Each call
to the seller's service carries a voucher for the cumulative amount owed so far, signed by the
buyer; the model's owner or operator claims the highest voucher on chain (``claim``), and after
the channel's expiry the buyer takes back what was not claimed (``reclaim``).

The voucher is EIP-712 typed data (primary type ``Voucher``)::

    domain  = {name: "Modex", version: "1", chainId: <chain id>,
               verifyingContract: <the Channels address>}
    Voucher(uint256 channelId, uint256 cumulativeAmount)

A browser wallet signs ``voucher_typed_data(...)`` with ``eth_signTypedData_v4``; Python callers use
``sign_voucher`` with an eth-account LocalAccount or a node Signer (node/signer.py). Test vector
(docs may quote it; tests/contracts/test_channels.py checks it): the private key 0x…01 (address
0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf), chain id 31337, Channels at
0x5FbDB2315678afecb367f032d93F642f64180aa3, channel 1, cumulative amount 1000000: the EIP-712
digest is ``VECTOR_DIGEST`` and the signature (r || s || v) ``VECTOR_SIGNATURE``, below.

``VoucherBook`` is the buyer's own record of what it signed per channel (`modex call --channel`
and the UI's Try it keep one per wallet).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import is_address, to_checksum_address
from eth_utils.exceptions import ValidationError
from web3.logs import DISCARD

from node.amounts import Token, fmt_amount
from node.errors import ChainError, ConfigError, InputError
from node.keyvault import atomic_write

log = logging.getLogger(__name__)

DOMAIN_NAME = "Modex"
DOMAIN_VERSION = "1"
VOUCHER_TYPE = "Voucher"
VOUCHER_FIELDS = [
    {"name": "channelId", "type": "uint256"},
    {"name": "cumulativeAmount", "type": "uint256"},
]
EIP712_DOMAIN_FIELDS = [
    {"name": field, "type": kind}
    for field, kind in (
        ("name", "string"),
        ("version", "string"),
        ("chainId", "uint256"),
        ("verifyingContract", "address"),
    )
]
UINT256_MAX = 2**256 - 1

# The test vector of the module docstring.
VECTOR_KEY = "0x" + "00" * 31 + "01"
VECTOR_CHAIN_ID = 31337
VECTOR_CHANNELS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
VECTOR_CHANNEL_ID = 1
VECTOR_AMOUNT = 1_000_000
VECTOR_DIGEST = (
    "0xcedf1a74fa92bfc3c7de39fe02f527630d56c4f2e12393767ba90dd542a2b32b"  # what is signed
)
VECTOR_SIGNATURE = (
    "0x1502a78474e90e87d4eae550810fdf41ad5b6a7859448ac11f8415bbf5877c31"
    "408d092a70c549f6d2b2225df24c424ecf0be7ec3de3105a664b8405c0f88f8d1b"
)


def _uint(value, what: str) -> int:
    """``value`` as a uint256; InputError naming ``what`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT256_MAX:
        raise InputError(
            f"the voucher's {what} must be a whole number from 0 to 2**256-1, not {value!r}"
        )
    return value


def voucher_typed_data(
    chain_id: int, channels_address: str, channel_id: int, cumulative_amount: int
) -> dict:
    """The full EIP-712 message of a voucher (JSON-serialisable, for eth_signTypedData_v4 too)."""
    if not is_address(channels_address):
        raise InputError(f"the Channels address {channels_address!r} is not an address")
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_FIELDS, VOUCHER_TYPE: VOUCHER_FIELDS},
        "primaryType": VOUCHER_TYPE,
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": _uint(chain_id, "chain id"),
            "verifyingContract": to_checksum_address(channels_address),
        },
        "message": {
            "channelId": _uint(channel_id, "channel id"),
            "cumulativeAmount": _uint(cumulative_amount, "cumulative amount"),
        },
    }


def sign_voucher(
    signer_or_account,
    chain_id: int,
    channels_address: str,
    channel_id: int,
    cumulative_amount: int,
) -> bytes:
    """The 65-byte signature of a voucher by a node Signer (its ``sign_typed_data`` returns the
    bytes) or an eth-account LocalAccount (it returns a SignedMessage)."""
    message = voucher_typed_data(chain_id, channels_address, channel_id, cumulative_amount)
    signed = signer_or_account.sign_typed_data(full_message=message)
    return bytes(signed if isinstance(signed, (bytes, bytearray)) else signed.signature)


def recover_voucher_signer(
    chain_id: int,
    channels_address: str,
    channel_id: int,
    cumulative_amount: int,
    signature: bytes | str,
) -> str:
    """The checksum address that signed this voucher; InputError for a malformed signature."""
    message = voucher_typed_data(chain_id, channels_address, channel_id, cumulative_amount)
    try:
        return Account.recover_message(encode_typed_data(full_message=message), signature=signature)
    except (ValueError, TypeError, ValidationError) as exc:
        raise InputError(
            f"the voucher signature is malformed ({exc}): it must be 65 bytes (r, s, v), 0x-hex"
        ) from None


@dataclass(frozen=True)
class ChannelState:
    """``Channels.channel(id)``: what a channel holds now."""

    channel_id: int
    model_id: int
    buyer: str
    token: str  # the zero address: ETH
    deposit: int
    claimed: int
    expires_at: int
    open: bool

    @property
    def remaining(self) -> int:
        """What vouchers may still take: the deposit less what was claimed."""
        return self.deposit - self.claimed


@dataclass(frozen=True)
class Claimed:
    """A claim's outcome (ChannelClaimed): credited to the owner, and the platform's fee."""

    channel_id: int
    cumulative_amount: int
    paid: int
    fee: int
    tx_hash: str


class ChannelClient:
    """Channels on one chain: reads and the buyer's and seller's transactions, each sent through
    ``Chain.transact`` (a dry run first, so a refusal is a sentence from node/revert.py before
    anything is sent). An ERC-20 deposit is approved first, to exactly what it needs."""

    def __init__(self, chain, channels_contract):
        self.chain = chain
        self.contract = channels_contract

    @classmethod
    def for_chain(cls, chain) -> ChannelClient:
        """The client of the Channels contract the chain's deployment record names."""
        return cls(chain, chain.contract("Channels"))

    @property
    def address(self) -> str:
        return self.contract.address

    # -- reads --------------------------------------------------------------------------------

    def channel(self, channel_id: int) -> ChannelState:
        """A channel as stored; ContractRevert "There is no channel N" for an unknown id."""
        model_id, buyer, token, deposit, claimed, expires_at, is_open = self.chain.call(
            self.contract.functions.channel(channel_id)
        )
        return ChannelState(
            int(channel_id),
            int(model_id),
            to_checksum_address(buyer),
            to_checksum_address(token),
            int(deposit),
            int(claimed),
            int(expires_at),
            bool(is_open),
        )

    def call_price(self, model_id: int) -> int:
        """The price of one call to ``model_id``'s service (its payment token's smallest unit)."""
        return int(self.chain.call(self.contract.functions.callPrice(model_id)))

    def payment_token(self, model_id: int) -> Token:
        """What ``model_id`` is paid in now, and so what a channel for it is opened in."""
        return self.chain.token(
            self.chain.call(self.chain.registry.functions.paymentToken(model_id))
        )

    def credited(self, account: str, token: str) -> int:
        """What ``account`` may withdraw from Channels in ``token`` (the zero address: ETH)."""
        return int(self.chain.call(self.contract.functions.credited(account, token)))

    def channels_of(self, buyer: str, from_block: int | None = None) -> list[ChannelState]:
        """Every channel ``buyer`` opened (from ChannelOpened events), as it stands now."""
        opened = self.chain.events(
            "ChannelOpened", from_block=from_block, buyer=to_checksum_address(buyer)
        )
        mine = [e for e in opened if e["address"] == self.address]
        return [self.channel(int(e["args"]["channelId"])) for e in mine]

    # -- the buyer ----------------------------------------------------------------------------

    def open(self, signer, model_id: int, amount: int, expires_at: int) -> ChannelState:
        """Open a channel for ``model_id`` with ``amount`` of its payment token until
        ``expires_at`` (a Unix time); return it as stored."""
        _positive(amount, "deposit")
        token = self.payment_token(model_id)
        self._require_funds(signer.address, token, amount, "the deposit is")
        fn = self.contract.functions.openChannel(model_id, token.address, amount, expires_at)
        receipt = self._pay(signer, fn, token, amount)
        opened = self._event(receipt, "ChannelOpened")
        channel = self.channel(int(opened["channelId"]))
        log.info(
            "opened channel %d for model %d with %s",
            channel.channel_id,
            model_id,
            fmt_amount(amount, token),
        )
        return channel

    def top_up(self, signer, channel_id: int, amount: int) -> ChannelState:
        """Add ``amount`` (in the channel's token) to an open, unexpired channel."""
        _positive(amount, "top-up")
        token = self.chain.token(self.channel(channel_id).token)
        self._require_funds(signer.address, token, amount, "the top-up is")
        self._pay(signer, self.contract.functions.topUp(channel_id, amount), token, amount)
        return self.channel(channel_id)

    def extend(self, signer, channel_id: int, expires_at: int) -> ChannelState:
        """Move the channel's expiry later, to ``expires_at``."""
        self.chain.transact(self.contract.functions.extend(channel_id, expires_at), signer)
        return self.channel(channel_id)

    def reclaim(self, signer, channel_id: int) -> int:
        """After expiry, take back what was not claimed and close the channel; return the amount."""
        receipt = self.chain.transact(self.contract.functions.reclaim(channel_id), signer)
        return int(self._event(receipt, "ChannelClosed")["returned"])

    # -- the seller ---------------------------------------------------------------------------

    def claim(
        self,
        signer,
        channel_id: int,
        cumulative_amount: int,
        signature: bytes | str,
        *,
        on_sent: Callable[[bytes], None] | None = None,
    ) -> Claimed:
        """Claim a buyer's voucher (by the model's owner or operator): the owner is credited the
        new part less the fee; ``withdraw`` takes it. ``on_sent(tx_hash)`` runs once the claim is
        sent, before its receipt (``Chain.transact``)."""
        raw = (
            bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
        )
        fn = self.contract.functions.claim(channel_id, cumulative_amount, bytes(raw))
        receipt = self.chain.transact(fn, signer, on_sent=on_sent)
        event = self._event(receipt, "ChannelClaimed")
        return Claimed(
            int(channel_id),
            int(event["cumulativeAmount"]),
            int(event["paid"]),
            int(event["fee"]),
            "0x" + bytes(receipt["transactionHash"]).hex(),
        )

    def withdraw(self, signer, token: str) -> int:
        """Send the signer everything Channels credited it in ``token``; return the amount."""
        receipt = self.chain.transact(self.contract.functions.withdraw(token), signer)
        return int(self._event(receipt, "Withdrawn")["amount"])

    def set_call_price(self, signer, model_id: int, price: int) -> None:
        """The model owner's price of one call, in the payment token's smallest unit."""
        if isinstance(price, bool) or not isinstance(price, int) or price < 0:
            raise InputError(
                f"a call price must be a whole number of base units >= 0, not {price!r}"
            )
        self.chain.transact(self.contract.functions.setCallPrice(model_id, price), signer)

    # -- helpers ------------------------------------------------------------------------------

    def _require_funds(self, address: str, token: Token, amount: int, what: str) -> None:
        have = self.chain.balance_in(token, address)
        if have < amount:
            gas = " plus gas" if token.is_eth else ""
            raise ChainError(
                f"insufficient funds: {address} holds {fmt_amount(have, token)} but {what} "
                f"{fmt_amount(amount, token)}{gas}; fund the account (nothing was sent)",
                address=address,
                balance=have,
                amount=amount,
            )

    def _pay(self, signer, fn, token: Token, amount: int):
        """Send ``fn``, which takes ``amount`` of ``token`` from the signer: as the value for
        ETH; for an ERC-20 after raising Channels' allowance to exactly ``amount`` when it is
        short (set to zero first when not zero, as USDT requires)."""
        if token.is_eth:
            return self.chain.transact(fn, signer, value=amount)
        erc20 = self.chain.erc20(token.address).functions
        current = int(self.chain.call(erc20.allowance(signer.address, self.address)))
        if current < amount:
            if current:
                self.chain.transact(erc20.approve(self.address, 0), signer)
            self.chain.transact(erc20.approve(self.address, amount), signer)
        return self.chain.transact(fn, signer)

    def _event(self, receipt, name: str) -> dict:
        events = self.contract.events[name]().process_receipt(receipt, errors=DISCARD)
        if not events:
            raise ChainError(
                f"the transaction was mined but Channels emitted no {name}: check the deployment "
                f"file's Channels address"
            )
        return dict(events[0]["args"])


def _positive(amount: int, what: str) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InputError(f"the {what} must be more than 0 (in base units), not {amount!r}")


class VoucherBook:
    """What this data dir signed on each payment channel: per channel the cumulative amount
    of the last voucher the service served a call for (``used``) and the highest one ever signed
    (``signed``, written before the voucher is sent). One small JSON file, written atomically."""

    def __init__(self, path: Path, chain_id: int, channels_address: str):
        self.path = Path(path)
        self.prefix = f"{chain_id}/{channels_address.lower()}/"
        try:
            self.entries = json.loads(self.path.read_text())
        except FileNotFoundError:
            self.entries = {}
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the voucher record {self.path} ({exc}); move it away to start "
                f"afresh (a call then recovers the channel's amount from the service's answer)"
            ) from None

    def get(self, channel_id: int, what: str) -> int:
        return int(self.entries.get(self.prefix + str(channel_id), {}).get(what, 0))

    def set(self, channel_id: int, **amounts: int) -> None:
        entry = self.entries.setdefault(self.prefix + str(channel_id), {})
        entry.update({k: str(v) for k, v in amounts.items()})
        atomic_write(self.path, json.dumps(self.entries, indent=1, sort_keys=True).encode())
