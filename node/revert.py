"""Decode reverts of the Modex contracts into ``ContractRevert`` with a sentence a person can act on.

A revert carries 4 bytes of selector and ABI-encoded arguments. The selector table is built from
every compiled Modex ABI (which includes the OpenZeppelin errors the contracts inherit, e.g.
``ERC721NonexistentToken``, ``OwnableUnauthorizedAccount``, ``ReentrancyGuardReentrantCall``) plus
Solidity's own ``Error(string)`` and ``Panic(uint256)``.

    try:
        ...
    except Exception as exc:
        raise as_revert(exc) or exc

or simply ``with decoded_reverts(): contract.functions.buy(...).transact(...)``.
The ContractRevert's ``context`` holds ``error`` (name), ``args`` (dict), ``selector`` and ``data``.
"""

from __future__ import annotations

import ast
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak, to_checksum_address
from web3.exceptions import ContractLogicError

from node.amounts import fmt_eth
from node.compiler import compile_contracts
from node.errors import ContractRevert
from node.protocol import ModelStatus, PurchaseStatus

log = logging.getLogger(__name__)

ERROR_STRING = {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]}
PANIC = {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]}
PANIC_CODES = {
    0x01: "an assertion failed",
    0x11: "an arithmetic overflow or underflow",
    0x12: "a division by zero",
    0x21: "an invalid enum value",
    0x31: "pop on an empty array",
    0x32: "an array index out of bounds",
    0x41: "too much memory",
    0x51: "a call to an invalid function",
}


def _status(enum, value) -> str:
    """A status number from a revert as its word ("refunded"); an unknown number as itself."""
    try:
        return enum(value).word.replace("_", " ")
    except ValueError:
        return str(value)


def when(timestamp: int) -> str:
    """A block timestamp as a person reads it: ``2026-05-01 12:00:00 UTC``."""
    return f"{datetime.fromtimestamp(int(timestamp), UTC):%Y-%m-%d %H:%M:%S} UTC"


# The old name, until modex/commands/models.py imports fmt_eth from node.amounts.
eth = fmt_eth


def _nothing_charged(sentence: str) -> Callable[[dict], str]:
    return lambda a: sentence.format(**a) + " Nothing was charged."


# Sentences that errors of several contracts share, each with its own contract, caller or action.
def _only_caller(who: str, action: str) -> Callable[[dict], str]:
    """A function only `who` (another Modex contract) may call was called by someone else."""
    return lambda a: f"Only {who} may {action}, not {a['caller']}."


def _bad_config(contract: str) -> Callable[[dict], str]:
    return lambda a: f"Bad {contract} constructor argument: {a['what']}."


def _already_connected(contract: str, arg: str) -> Callable[[dict], str]:
    """The Marketplace's one-time link to another contract (argument `arg`) is already set."""
    return lambda a: (
        f"The {contract} contract is already connected ({a[arg]}); it can be set only once."
    )


# One sentence per error: what happened (with the numbers) and what to do.
MESSAGES: dict[str, Callable[[dict], str]] = {
    # ModelRegistry
    "ModelRegistryNotOwner": lambda a: (
        f"Only the owner of model {a['modelId']} ({a['owner']}) can change it; {a['caller']} is not the owner."
    ),
    "ModelRegistryZeroModelHash": lambda a: (
        "The model hash is zero: compute it from the model directory first."
    ),
    "ModelRegistryEmptyCid": lambda a: (
        "The metadata CID is empty: pin the metadata JSON first and pass its CID."
    ),
    "ModelRegistryCidTooLong": lambda a: (
        f"The metadata CID is {a['length']} characters long; at most {a['maxLength']} are accepted."
    ),
    "ModelRegistryPriceTooHigh": lambda a: (
        f"A price of {fmt_eth(a['price'])} is above the largest accepted price ({fmt_eth(a['maxPrice'])})."
    ),
    "ModelRegistryBadWorkDigest": lambda a: (
        f"{a['workDigest']} cannot be claimed as a work digest (zero, or the reserved failure digest): claim the "
        f"SHA-256 of your own evaluation report (`modex evaluate` prints it)."
    ),
    "ModelRegistryAlreadyClaimed": lambda a: (
        f"Model {a['modelId']} already claims the work digest {a['workDigest']}; a claim is final (a model verified "
        f"against one claim can never show another). To claim a new evaluation, publish it as a new listing."
    ),
    # Marketplace
    "MarketplaceModelInactive": lambda a: (
        f"Model {a['modelId']} is not for sale right now (its seller deactivated it); nothing was charged."
    ),
    "MarketplaceModelDisputed": lambda a: (
        f"Model {a['modelId']} is disputed by validators (its files, or its claimed metrics, are not what was "
        f"listed): it cannot be bought, a purchase still pending can no longer be delivered, and a sale "
        f"delivered within its challenge period is refunded to its buyer instead of paid to the seller; "
        f"such a buyer can refund now (`modex refund PURCHASE_ID`). Nothing was charged."
    ),
    "MarketplacePriceAboveMax": lambda a: (
        f"Price is {fmt_eth(a['price'])}, above your maximum of {fmt_eth(a['maxPrice'])}; nothing was charged."
    ),
    "MarketplaceWrongPayment": lambda a: (
        f"Model {a['modelId']} costs exactly {fmt_eth(a['price'])} but {fmt_eth(a['sent'])} was sent; "
        f"nothing was charged — send the exact price."
    ),
    "MarketplaceZeroBuyerKey": lambda a: (
        "The encryption public key is zero: derive it from your wallet (docs/formats.md §4); nothing was charged."
    ),
    "MarketplaceAlreadyLicensed": lambda a: (
        f"{a['account']} already received the key for model {a['modelId']}; nothing was charged."
    ),
    "MarketplacePurchasePending": lambda a: (
        f"Purchase {a['purchaseId']} of this model is still waiting for its key (until {when(a['deadline'])}); "
        f"wait for delivery, or refund it after the deadline. Nothing was charged."
    ),
    "MarketplaceNotValidator": lambda a: (
        f"{a['account']} is not an active validator: stake at least the minimum in Validators first."
    ),
    "MarketplaceUnknownPurchase": lambda a: f"There is no purchase {a['purchaseId']}.",
    "MarketplaceNotPending": lambda a: (
        f"Purchase {a['purchaseId']} is {_status(PurchaseStatus, a['status'])}, not pending, "
        f"so nothing more can be done with it."
    ),
    "MarketplaceWrongBuyer": lambda a: (
        f"Purchase {a['purchaseId']} belongs to {a['expected']}, not {a['given']} (after a reorg a purchase id "
        f"can name another buyer): the key was wrapped for the wrong account and was not delivered."
    ),
    "MarketplaceNotDeliverer": lambda a: (
        f"{a['caller']} may not deliver the key of purchase {a['purchaseId']}: only the model's owner or "
        f"its operator can (see setOperator)."
    ),
    "MarketplaceDeliveryWindowClosed": lambda a: (
        f"The delivery window of purchase {a['purchaseId']} closed at {when(a['deadline'])}; "
        f"the buyer can now take a refund."
    ),
    "MarketplaceDeliveryWindowOpen": lambda a: (
        f"Purchase {a['purchaseId']} can still be delivered until {when(a['deadline'])}; "
        f"a refund is possible only after that (or at once if validators dispute the model)."
    ),
    "MarketplaceBadWrappedKey": lambda a: (
        f"The wrapped key is {a['length']} bytes; it must be {a['expected']} (HPKE enc || ciphertext, docs/formats.md §4)."
    ),
    "MarketplaceNotBuyer": lambda a: (
        f"Only the buyer of purchase {a['purchaseId']} can refund it, not {a['caller']}."
    ),
    "MarketplaceNotRefundable": lambda a: (
        f"Purchase {a['purchaseId']} was delivered: it is refundable only when validators dispute its model "
        f"within the sale's challenge period, while the seller's revenue is still held (not the case here, "
        f"or it was a free licence). Nothing was sent."
    ),
    "MarketplaceNothingToRelease": lambda a: (
        f"Purchase {a['purchaseId']} has no revenue to release: it is not delivered, was free, refunded, or "
        f"already paid out."
    ),
    "MarketplaceRevenueHeld": lambda a: (
        f"The revenue of purchase {a['purchaseId']} is held until {when(a['challengeEnd'])} (its challenge "
        f"period, during which a dispute refunds the buyer); release it after that."
    ),
    "MarketplaceNothingToWithdraw": lambda a: f"{a['account']} has nothing to withdraw.",
    "MarketplaceTransferFailed": lambda a: (
        f"Sending {fmt_eth(a['amount'])} to {a['account']} failed (the receiver rejected it); the balance stays "
        f"credited — withdraw again from an account that accepts ETH."
    ),
    "MarketplaceFeeTooHigh": lambda a: (
        f"A fee of {a['feeBps']} basis points is above the cap of {a['maxFeeBps']}."
    ),
    "MarketplaceZeroAddress": lambda a: "The zero address is not allowed here.",
    "MarketplaceValidatorsAlreadySet": _already_connected("Validators", "validators"),
    "MarketplaceOnlyValidators": _only_caller("the Validators contract", "record verdicts"),
    "MarketplaceVotesAlreadySet": _already_connected("Votes", "votes"),
    "MarketplaceOnlyVotes": _only_caller("the Votes contract", "record votes"),
    "MarketplaceNotVerifier": lambda a: (
        f"{a['account']} is not one of the validators that verified model {a['modelId']}, so it has no reward."
    ),
    "MarketplaceNothingToClaim": lambda a: (
        f"{a['account']} has no new reward for model {a['modelId']}; rewards grow with each delivered sale."
    ),
    "MarketplaceBadConfig": _bad_config("Marketplace"),
    # Votes
    "VotesScoreOutOfRange": lambda a: f"A score must be 1 to 5, not {a['score']}.",
    "VotesNoLicense": lambda a: (
        f"{a['voter']} holds no voting licence for model {a['modelId']}: only buyers who received the key, "
        f"paid more than 0 and are not the model's owner can vote."
    ),
    "VotesOnlyMarketplace": _only_caller("the Marketplace", "drop votes"),
    # Validators
    "ValidatorsStakeTooLow": lambda a: (
        f"A stake of {fmt_eth(a['stake'])} is below the minimum of {fmt_eth(a['minStake'])}; nothing was staked."
    ),
    "ValidatorsUnstakePending": lambda a: (
        f"{a['validator']} asked to unstake (unlocks at {when(a['unlockAt'])}); it cannot stake or ask again."
    ),
    "ValidatorsNotStaked": lambda a: f"{a['validator']} has no stake.",
    "ValidatorsUnstakeNotRequested": lambda a: (
        f"{a['validator']} must call requestUnstake and wait the unstake delay before unstaking."
    ),
    "ValidatorsStillLocked": lambda a: (
        f"The stake of {a['validator']} unlocks at {when(a['unlockAt'])} (now {when(a['now_'])}); try again then."
    ),
    "ValidatorsNotActive": lambda a: (
        f"{a['validator']} is not an active validator (no minimum stake, or leaving); stake first."
    ),
    "ValidatorsOpenSeats": lambda a: (
        f"{a['validator']} still holds {a['openSeats']} open seat(s) (key requests or attestations not yet "
        f"released): finish or release them (`release` after their round settles) before asking to unstake."
    ),
    "ValidatorsTooManyOpenRequests": lambda a: (
        f"{a['validator']} already holds the most open seats allowed ({a['maxOpenRequests']}): finish a model "
        f"and release its seat before asking for another key."
    ),
    "ValidatorsStakeBonded": lambda a: (
        f"{a['validator']} has {fmt_eth(a['free'])} of stake not bonded, and this needs {fmt_eth(a['needed'])}: add "
        f"stake or wait for open seats to be released."
    ),
    "ValidatorsAlreadySettled": lambda a: (
        f"Model {a['modelId']} is already settled as {_status(ModelStatus, a['status'])}; no more key requests "
        f"or attestations."
    ),
    "ValidatorsAlreadyRequested": lambda a: (
        f"{a['validator']} already has a seat on model {a['modelId']} (a key asked for or delivered)."
    ),
    "ValidatorsNoKey": lambda a: (
        f"{a['validator']} cannot commit on model {a['modelId']}: its key has not been delivered to it (or it "
        f"already committed in this round); ask for the key first (requestValidatorKey)."
    ),
    "ValidatorsZeroCommitment": lambda a: (
        "A zero commitment is not accepted: commit to the keccak256 of your attestation."
    ),
    "ValidatorsCommitClosed": lambda a: (
        f"Commits on model {a['modelId']} closed at {when(a['commitEnd'])}; reveal, or commit in its next round."
    ),
    "ValidatorsRoundNotSettled": lambda a: (
        f"The round of model {a['modelId']} ended at {when(a['revealEnd'])} and is not settled yet: settle it "
        f"first (anyone may), then commit in the next round."
    ),
    "ValidatorsNothingToReveal": lambda a: (
        f"{a['validator']} has no commitment to reveal in the current round of model {a['modelId']}."
    ),
    "ValidatorsRevealNotOpen": lambda a: (
        f"Reveals on model {a['modelId']} open after {when(a['commitEnd'])}, when commits close; reveal then."
    ),
    "ValidatorsRevealClosed": lambda a: (
        f"Reveals on model {a['modelId']} closed at {when(a['revealEnd'])}; the commitment can no longer be opened."
    ),
    "ValidatorsRevealMismatch": lambda a: (
        f"The reveal of {a['validator']} on model {a['modelId']} does not match its commitment (another hash, "
        f"digest or salt than the ones committed to)."
    ),
    "ValidatorsNoRound": lambda a: (
        f"Model {a['modelId']} has no open round to settle: nobody has committed yet."
    ),
    "ValidatorsRevealOpen": lambda a: (
        f"The reveal period of model {a['modelId']} runs until {when(a['revealEnd'])}; settle after that."
    ),
    "ValidatorsNothingToRelease": lambda a: (
        f"The seat of {a['validator']} on model {a['modelId']} cannot be released now: none is open, or its "
        f"round is not over (a request is released once it expired, an attestation once its round settled)."
    ),
    "ValidatorsSeatInUse": lambda a: (
        f"The seat of {a['validator']} on model {a['modelId']} is in state {a['seatState']}, not waiting for a key."
    ),
    "ValidatorsOnlyMarketplace": _only_caller("the Marketplace", "open or key seats"),
    "ValidatorsNothingToWithdraw": lambda a: (
        f"{a['account']} has nothing to withdraw from Validators."
    ),
    "ValidatorsTransferFailed": lambda a: (
        f"Sending {fmt_eth(a['amount'])} to {a['account']} failed (the receiver rejected it); nothing was lost — "
        f"it stays there to take later."
    ),
    "ValidatorsBadConfig": _bad_config("Validators"),
    # OpenZeppelin
    "ERC721NonexistentToken": lambda a: f"There is no model {a['tokenId']}.",
    "ERC721IncorrectOwner": lambda a: (
        f"{a['sender']} does not own model {a['tokenId']} (its owner is {a['owner']})."
    ),
    "ERC721InsufficientApproval": lambda a: (
        f"{a['operator']} is not approved to transfer model {a['tokenId']}."
    ),
    "ERC721InvalidReceiver": lambda a: f"{a['receiver']} cannot receive model tokens.",
    "ERC721InvalidSender": lambda a: f"{a['sender']} cannot send model tokens.",
    "ERC721InvalidOwner": lambda a: f"{a['owner']} is not a valid owner.",
    "ERC721InvalidApprover": lambda a: f"{a['approver']} cannot approve.",
    "ERC721InvalidOperator": lambda a: f"{a['operator']} cannot be an operator.",
    "OwnableUnauthorizedAccount": lambda a: (
        f"Only the contract owner can do this, not {a['account']}."
    ),
    "OwnableInvalidOwner": lambda a: f"{a['owner']} cannot own the contract.",
    "ReentrancyGuardReentrantCall": lambda a: (
        "A re-entrant call was refused (a contract called back during a payment)."
    ),
    "SafeCastOverflowedUintDowncast": lambda a: (
        f"The value {a['value']} does not fit {a['bits']} bits."
    ),
    "Error": lambda a: f"The contract refused: {a['message']}",
    "Panic": lambda a: (
        f"The contract failed with {PANIC_CODES.get(a['code'], 'panic code ' + hex(a['code']))}."
    ),
}


def _selector(error_abi: dict) -> str:
    signature = f"{error_abi['name']}({','.join(_canonical_type(i) for i in error_abi['inputs'])})"
    return "0x" + keccak(text=signature)[:4].hex()


def _canonical_type(item: dict) -> str:
    if item["type"].startswith("tuple"):
        return (
            "(" + ",".join(_canonical_type(c) for c in item["components"]) + ")" + item["type"][5:]
        )
    return item["type"]


def error_table(abis: Iterable[list]) -> dict[str, dict]:
    """``{selector: error ABI}`` over the given ABIs plus Error(string) and Panic(uint256)."""
    table = {_selector(ERROR_STRING): ERROR_STRING, _selector(PANIC): PANIC}
    for abi in abis:
        for item in abi:
            if item.get("type") == "error":
                table[_selector(item)] = item
    return table


@lru_cache(maxsize=1)
def _modex_table() -> dict[str, dict]:
    return error_table(a["abi"] for a in compile_contracts().values())


def decode_revert(data, abis: Iterable[list] | None = None) -> ContractRevert:
    """Turn revert data (hex string or bytes) into a ContractRevert; unknown selectors are reported raw."""
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
    hex_data = "0x" + raw.hex()
    table = error_table(abis) if abis is not None else _modex_table()
    selector = "0x" + raw[:4].hex()
    error_abi = table.get(selector)
    if len(raw) < 4 or error_abi is None:
        reason = "without a reason" if not raw else f"with unknown error data {hex_data}"
        return ContractRevert(
            f"The transaction was reverted {reason}.",
            error=None,
            args={},
            selector=selector if raw else None,
            data=hex_data,
        )
    names = [i["name"] or f"arg{n}" for n, i in enumerate(error_abi["inputs"])]
    try:
        values = decode([_canonical_type(i) for i in error_abi["inputs"]], raw[4:])
    except (
        DecodingError,
        ValueError,
        OverflowError,
    ) as exc:  # malformed data: report the name, never crash the caller
        return ContractRevert(
            f"The transaction was reverted with {error_abi['name']} (undecodable: {exc}).",
            error=error_abi["name"],
            args={},
            selector=selector,
            data=hex_data,
        )
    types = [i["type"] for i in error_abi["inputs"]]
    args = dict(zip(names, (_plain(v, t) for v, t in zip(values, types, strict=True)), strict=True))
    render = MESSAGES.get(error_abi["name"])
    message = render(args) if render else f"The contract refused with {error_abi['name']}{args}."
    return ContractRevert(
        message, error=error_abi["name"], args=args, selector=selector, data=hex_data
    )


def as_revert(exc: BaseException, abis: Iterable[list] | None = None) -> ContractRevert | None:
    """The ContractRevert for a revert exception, or None if ``exc`` is not a revert.

    Understands web3's ContractLogicError family (JSON-RPC nodes such as anvil: ``.data`` is the hex
    revert data) and eth-tester's TransactionFailed (the embedded chain: the raw bytes travel in the
    exception or in the one it was raised from).
    """
    if isinstance(exc, ContractRevert):
        return exc
    data = _revert_data(exc)
    if data is not None:
        decoded = decode_revert(data, abis)
    elif isinstance(exc, ContractLogicError) or _is_tester_failure(exc):
        decoded = ContractRevert(
            f"The transaction was reverted: {getattr(exc, 'message', None) or exc}.",
            error=None,
            args={},
            selector=None,
            data=None,
        )
    else:
        return None
    decoded.__cause__ = exc
    return decoded


def _revert_data(raised: BaseException) -> bytes | str | None:
    exc: BaseException | None = raised
    seen = 0
    while exc is not None and seen < 8:
        seen += 1
        if isinstance(exc, ContractLogicError):
            data = exc.data.get("data") if isinstance(exc.data, dict) else exc.data
            if isinstance(data, str) and data.startswith("0x"):
                return data
        elif _is_tester_failure(exc) or type(exc).__name__ == "Revert":
            arg = exc.args[0] if exc.args else None
            if isinstance(arg, BaseException) and arg.args:
                arg = arg.args[0]
            if isinstance(arg, bytes):
                return arg
            if isinstance(arg, str):  # eth_call on eth-tester: only the bytes' repr survives
                literal = arg.removeprefix("execution reverted: ")
                if literal[:2] in ("b'", 'b"'):
                    try:
                        value = ast.literal_eval(literal)
                    except (ValueError, SyntaxError):
                        value = None
                    if isinstance(value, bytes):
                        return value
        exc = exc.__cause__ or exc.__context__
    return None


def _is_tester_failure(exc: BaseException) -> bool:
    return type(exc).__name__ == "TransactionFailed" and type(exc).__module__.startswith(
        "eth_tester"
    )


@contextlib.contextmanager
def decoded_reverts(abis: Iterable[list] | None = None):
    """Re-raise web3 revert exceptions inside the block as decoded ContractRevert."""
    try:
        yield
    except Exception as exc:
        decoded = as_revert(exc, abis)
        if decoded is None or decoded is exc:
            raise
        raise decoded from exc


def _plain(value, abi_type: str = ""):
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
