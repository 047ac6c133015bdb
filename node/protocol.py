"""The contracts' facts in one place: status values, typed records for what the views return, and
the attestation commitment Validators recomputes. The JSON bytes the node hashes for the chain
(canonical JSON, the work digest, the ABI hash) are in node/onchain.py.

Every number here mirrors a Solidity constant (contracts/README.md lists them); code compares
against these names, never against literals, and reads ``Marketplace.purchase`` / ``book``,
``ModelRegistry.saleTerms`` and ``Validators.attestationOf`` / ``stakeOf`` / ``roundOf`` through the records below, never by
position.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

# Re-exported until node/validator.py imports it from node.onchain.
from node.onchain import work_digest  # noqa: F401

ZERO32 = b"\x00" * 32
# ModelRegistry.FAILED_WORK_DIGEST: what a validator reveals when the declared evaluation cannot run
# (weights that do not load, an unknown eval set, no eval set declared). Never a seller's claim, so
# it never counts towards Verified.
FAILED_WORK_DIGEST = b"\xff" * 32
# docs/formats.md section 7: the evaluation report's format version, and the file beside a model's
# weights that holds its seller's report (``modex train`` and ``modex evaluate --report`` write it;
# ``modex publish`` claims its work digest).
REPORT_VERSION = 1
EVALUATION_REPORT = "evaluation.json"
# Votes.vote: a score is a whole number of stars from 1 to 5 (VotesScoreOutOfRange otherwise).
SCORES = range(1, 6)


class PurchaseStatus(IntEnum):
    """Marketplace.STATUS_*."""

    NONE = 0
    PENDING = 1
    DELIVERED = 2  # a buyer's licence, or a validator's key
    REFUNDED = 3
    EXPIRED = 4  # a validator's request replaced after its window

    @property
    def word(self) -> str:
        """The status as the index, the CLI and the UI name it ("delivered")."""
        return self.name.lower()


class ModelStatus(IntEnum):
    """Validators.STATUS_*: what the validators settled about a model."""

    UNVERIFIED = 0
    VERIFIED = 1  # the majority reproduced the listed hash and the seller's claimed work digest
    DISPUTED = 2  # the majority found another hash, or could not read the content
    METRICS_DISPUTED = 3  # the listed hash, but not the claimed work digest

    @property
    def word(self) -> str:
        """The status as the index stores it and ``modex models --status`` takes it
        ("metrics_disputed")."""
        return self.name.lower()

    @property
    def stops_sales(self) -> bool:
        """Settled as anything but Verified: the Marketplace then books the model as disputed
        (``Book.disputed``): no sales, no deliveries, and its buyers refunded (recordVerdict)."""
        return self in (ModelStatus.DISPUTED, ModelStatus.METRICS_DISPUTED)


class SeatState(IntEnum):
    """Validators.SEAT_*: a validator's part in one model."""

    NONE = 0
    REQUESTED = 1
    KEYED = 2
    COMMITTED = 3
    REVEALED = 4
    RELEASED = 5


class Purchase(NamedTuple):
    """``Marketplace.purchase(id)``."""

    account: str
    model_id: int
    price: int
    deadline: int
    status: PurchaseStatus
    for_validator: bool
    delivered_at: int
    released: bool

    @classmethod
    def from_call(cls, row) -> Purchase:
        account, model_id, price, deadline, status, for_validator, delivered_at, released = row
        return cls(
            to_checksum_address(account),
            int(model_id),
            int(price),
            int(deadline),
            PurchaseStatus(status),
            bool(for_validator),
            int(delivered_at),
            bool(released),
        )


class SaleTerms(NamedTuple):
    """``ModelRegistry.saleTerms(modelId)``: what Marketplace.buy reads of a listing."""

    price: int
    active: bool
    owner: str

    @classmethod
    def from_call(cls, row) -> SaleTerms:
        price, active, owner = row
        return cls(int(price), bool(active), to_checksum_address(owner))


# The token address that stands for ETH wherever the contracts take or return a payment token
# (ModelRegistry.paymentToken, Marketplace.credited / withdraw(token), the money events' `token`).
ETH_TOKEN = "0x" + "00" * 20


class SubscriptionTerms(NamedTuple):
    """``ModelRegistry.subscriptionTerms(modelId)``: (0, 0) when the owner offers none."""

    price_per_period: int  # in the listing's payment token's smallest unit
    period_seconds: int

    @property
    def offered(self) -> bool:
        return self.price_per_period != 0

    @classmethod
    def from_call(cls, row) -> SubscriptionTerms:
        price, period = row
        return cls(int(price), int(period))


class Book(NamedTuple):
    """``Marketplace.book(modelId)``: the validation outcome the Marketplace was told."""

    verifier_weight: int
    disputed: bool
    disputed_at: int
    reward_per_weight: int

    @classmethod
    def from_call(cls, row) -> Book:
        weight, disputed, disputed_at, reward = row
        return cls(int(weight), bool(disputed), int(disputed_at), int(reward))


class Seat(NamedTuple):
    """``Validators.attestationOf(modelId, validator)``."""

    state: SeatState
    round: int
    says: (
        ModelStatus | None
    )  # the status its revealed attestation argues for (None before a reveal)
    weight: int
    commit_bond: int

    @classmethod
    def from_call(cls, row) -> Seat:
        state, round_, says, weight, bond = row
        return cls(
            SeatState(state),
            int(round_),
            ModelStatus(says) if says else None,
            int(weight),
            int(bond),
        )


class Round(NamedTuple):
    """``Validators.roundOf(modelId)``: commit_end is 0 while no round is open."""

    number: int
    commit_end: int
    reveal_end: int

    @classmethod
    def from_call(cls, row) -> Round:
        return cls(*(int(x) for x in row))


class StakeInfo(NamedTuple):
    """``Validators.stakeOf(validator)``."""

    amount: int
    bonded: int
    unlock_at: int  # 0 while active
    open_seats: int

    @classmethod
    def from_call(cls, row) -> StakeInfo:
        return cls(*(int(x) for x in row))


def declared_metrics_differences(declared, report: dict) -> list[str]:
    """How a listing's declared metrics (its metadata's ``metrics``) differ from an evaluation
    report: the eval set it names, and every metric of the report it declares with another value
    (``"accuracy: declared 0.99, reproduced 0.55"``). Empty when the listing says what the
    evaluation shows. A validator reveals the failure digest for a listing that differs (a claimed
    digest of an honest report then cannot make a card's invented figures Verified), and
    ``modex publish`` refuses to claim for one."""
    if not isinstance(declared, dict):
        return ["the listing declares no metrics"]
    differences = []
    if declared.get("eval_set") != report.get("eval_set"):
        differences.append(
            f"eval_set: declared {declared.get('eval_set')!r}, evaluated {report.get('eval_set')!r}"
        )
    for name, value in sorted((report.get("metrics") or {}).items()):
        if name != "eval_set" and name in declared and declared[name] != value:
            differences.append(f"{name}: declared {declared[name]!r}, reproduced {value!r}")
    return differences


def attestation_commitment(
    chain_id: int,
    validators: str,
    model_id: int,
    validator: str,
    observed_hash: bytes,
    work_digest_: bytes,
    salt: bytes,
) -> bytes:
    """``keccak256(abi.encode(block.chainid, address(this), modelId, validator, observedHash,
    workDigest, salt))``, as Validators.revealAttestation recomputes it."""
    return keccak(
        abi_encode(
            ["uint256", "address", "uint256", "address", "bytes32", "bytes32", "bytes32"],
            [
                chain_id,
                to_checksum_address(validators),
                model_id,
                to_checksum_address(validator),
                observed_hash,
                work_digest_,
                salt,
            ],
        )
    )
