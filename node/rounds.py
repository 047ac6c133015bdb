"""One model's seat through its commit–reveal rounds (contracts/Validators.sol): the step that is
due, decided from the chain and this node's record, and the transaction that takes it.

``RoundSteps.step(model_id, report)`` reads the model's ``status``, its ``roundOf`` and this
validator's seat (``attestationOf``), then takes the one step due (``node.validator`` lists them):
ask for the key, commit (after the first check of the model, kept in the record), reveal,
settle, release. What a step did, waits for or was refused goes into the pass's
``ValidatorReport``.

Validation runs in cycles, one per version validated (``Validators.attestedVersion`` names the
current cycle's). Once the current cycle settled Verified and the owner published a later
version (``opensNewCycle``), the model is validated again: this validator releases its seat in
the old cycle, forgets that cycle's record and asks for the key, which opens the new cycle. A
seat left in an older cycle (another validator opened the new one first) is released with
``releaseAt``: the state file keeps the version each seat is for (``AgentState.seat_versions``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from web3.logs import DISCARD

from node import market
from node.agentstate import AgentState, Commitment, ModelRecord
from node.amounts import Token
from node.attestation import Attestation
from node.content import keywrap
from node.errors import ChainError, ContractRevert
from node.protocol import (
    ModelStatus,
    Purchase,
    PurchaseStatus,
    Round,
    Seat,
    SeatState,
    attestation_commitment,
)
from node.revert_sentences import when
from node.versions import version_count

log = logging.getLogger("node.validator")  # one logger for the agent, as before the split


@dataclass(frozen=True)
class Waiting:
    """What a model waits for, and until when (a chain timestamp; None when open-ended)."""

    what: str
    until: int | None = None

    def describe(self, now: int) -> str:
        """ "waiting for …: until 2026-12-03 09:30:20 UTC (in 14 s)" (``now``: chain time)."""
        if self.until is None:
            return f"waiting for {self.what}"
        return (
            f"waiting for {self.what}: until {when(self.until)} (in {max(0, self.until - now)} s)"
        )


@dataclass
class ValidatorReport:
    staked: int = 0
    requested: list[int] = field(default_factory=list)  # model ids we asked a key for
    committed: list[Attestation] = field(default_factory=list)
    revealed: list[Attestation] = field(default_factory=list)
    settled: dict[int, ModelStatus | None] = field(default_factory=dict)  # None: round undecided
    released: dict[int, tuple[int, int]] = field(default_factory=dict)  # (returned, forfeited) wei
    waiting: dict[int, Waiting] = field(default_factory=dict)
    retry: dict[int, str] = field(default_factory=dict)  # not checked this pass (local/store), why
    refused: dict[int, str] = field(default_factory=dict)  # a step the contracts refused, why
    done: list[int] = field(default_factory=list)  # settled and released (nothing more to do)
    rewards: list[tuple[int, Token, int]] = field(default_factory=list)  # model, token, amount
    versions: dict[int, int] = field(default_factory=dict)  # the version a model's steps were for

    def name(self, model_id: int) -> str:
        """ "model 3", or "model 3 version 2" when its steps were for a version after the first."""
        version = self.versions.get(model_id, 1)
        return f"model {model_id}" if version == 1 else f"model {model_id} version {version}"

    def about(self, model_id: int, now: int) -> str:
        """Where the model stands after this pass: what it waits for (and until when), or why a
        step did not happen."""
        wait = self.waiting.get(model_id)
        if wait is not None:
            return wait.describe(now)
        return self.retry.get(model_id) or self.refused.get(model_id) or "in progress"


NO_ROUND = Round(0, 0, 0)  # the round of a cycle nobody asked a key for yet
OPEN_SEATS = (SeatState.REQUESTED, SeatState.KEYED, SeatState.COMMITTED, SeatState.REVEALED)


def until_commits_close(rnd: Round) -> Waiting:
    return Waiting(f"commits of round {rnd.number} to close, then it reveals", rnd.commit_end)


def until_reveals_end(rnd: Round) -> Waiting:
    return Waiting("the reveal period to end, then it settles", rnd.reveal_end)


class RoundSteps:
    """The on-chain steps of this validator's seats, one model at a time; ``verify(model_id,
    purchase_id)`` checks a model (fetch, re-hash, evaluate) with the key of that request.
    ``state.validator`` is the validator whose seats these are: the signer itself, or the
    validator that named the signer its attester (``Validators.setAttester``), for which it
    sends the ``...For`` calls."""

    def __init__(self, chain, signer, state: AgentState, verify: Callable[[int, int], Attestation]):
        self.chain = chain
        self.signer = signer
        self.state = state
        self.verify = verify
        self.validator = state.validator
        self._x25519: tuple[bytes, bytes] | None = None

    @property
    def attesting(self) -> bool:
        """Whether the signer is the validator's attester rather than the validator itself."""
        return self.validator.lower() != self.signer.address.lower()

    def for_validator(self, contract, name: str, *args):
        """``contract``'s function ``name`` for this validator: as it (``name(*args)``) or, by its
        attester, ``nameFor(validator, *args)``."""
        if self.attesting:
            return getattr(contract.functions, name + "For")(self.validator, *args)
        return getattr(contract.functions, name)(*args)

    @property
    def x25519(self) -> tuple[bytes, bytes]:
        """This validator's key pair on this chain, which its key requests name."""
        if self._x25519 is None:
            self._x25519 = keywrap.derive_x25519(self.signer, self.chain.chain_id)
        return self._x25519

    def step(self, model_id: int, report: ValidatorReport) -> None:
        """Take the step that is due for the model (``node.validator``: step 3 of a pass)."""
        v = self.chain.validators.functions
        current = int(self.chain.call(v.attestedVersion(model_id)))  # 0: no cycle yet
        if not self._older_seat_left(model_id, current, report):
            return
        report.versions[model_id] = current or version_count(self.chain, model_id)
        status = ModelStatus(self.chain.call(v.status(model_id)))
        if status == ModelStatus.VERIFIED and self.chain.call(v.opensNewCycle(model_id)):
            self._validate_next_version(model_id, current, report)
        else:
            self._step_in_cycle(model_id, current, status, report)

    def _step_in_cycle(
        self, model_id: int, current: int, status: ModelStatus, report: ValidatorReport
    ) -> None:
        """The step due in the current cycle (attesting ``current``; its ``status``)."""
        v, me = self.chain.validators.functions, self.validator
        seat = Seat.from_call(self.chain.call(v.attestationOf(model_id, me)))
        if seat.state == SeatState.RELEASED or (
            seat.state == SeatState.NONE and status != ModelStatus.UNVERIFIED
        ):
            self.finish(model_id, current, report)
            return
        rnd = Round.from_call(self.chain.call(v.roundOf(model_id)))
        if status == ModelStatus.UNVERIFIED and rnd.commit_end and self.now() > rnd.reveal_end:
            status = self._settle(model_id, report)
            rnd = Round.from_call(self.chain.call(v.roundOf(model_id)))
        if status != ModelStatus.UNVERIFIED and seat.state == SeatState.NONE:
            self.finish(model_id, current, report)  # settled by this pass; it held no seat
        elif status != ModelStatus.UNVERIFIED:
            if self._release(model_id, current, seat, report):
                self.finish(model_id, current, report)  # settled: this seat is closed for good
        elif seat.state in (SeatState.NONE, SeatState.REQUESTED):
            self._ask_for_key(model_id, rnd, report)
        elif seat.state == SeatState.KEYED or (
            seat.state == SeatState.REVEALED and seat.round < rnd.number
        ):
            self._commit(model_id, rnd, report)
        elif seat.state == SeatState.COMMITTED and seat.round < rnd.number:
            # Its round closed (undecided) before this seat revealed: it can only be released,
            # and its bonds are forfeited.
            log.warning(
                "%s: the commitment of round %d was never revealed; releasing "
                "the seat (its bonds are forfeited)",
                report.name(model_id),
                seat.round,
            )
            if self._release(model_id, current, seat, report):
                self.finish(model_id, current, report)
        elif seat.state == SeatState.COMMITTED:
            self._reveal(model_id, rnd, report)
        else:  # revealed in the open round
            report.waiting[model_id] = until_reveals_end(rnd)

    def finish(self, model_id: int, version: int, report: ValidatorReport) -> None:
        """Nothing more to do for the model (its cycle attesting ``version`` is behind this
        validator): it leaves the to-do set, with its record, until a later version is published
        (``AgentState.listings_in``); it stays when one was published already (the next step
        opens its cycle)."""
        self._forget_cycle(model_id, version)
        if self.chain.call(self.chain.validators.functions.opensNewCycle(model_id)):
            return
        self.state.todo.discard(model_id)
        self.state.save()
        report.done.append(model_id)

    def _forget_cycle(self, model_id: int, version: int) -> None:
        """Forget this validator's seat version and record for the cycle attesting ``version``;
        a model it verified there stays in the set whose rewards the agent claims."""
        if version and self.chain.call(
            self.chain.validators.functions.verifierWeightAt(model_id, version, self.validator)
        ):
            self.state.rewarding.add(model_id)
        self.state.forget_cycle(model_id)
        self.state.save()

    def _leave_cycle(self, model_id: int, version: int, report: ValidatorReport) -> bool:
        """Release this validator's seat in the cycle attesting ``version`` if it is still open,
        and forget that cycle; False while the release must wait (the model's wait is
        reported)."""
        seat = Seat.from_call(
            self.chain.call(
                self.chain.validators.functions.attestationAt(model_id, version, self.validator)
            )
        )
        if seat.state in OPEN_SEATS and not self._release(model_id, version, seat, report):
            return False
        self._forget_cycle(model_id, version)
        return True

    def _older_seat_left(self, model_id: int, current: int, report: ValidatorReport) -> bool:
        """Whether this validator holds no seat in a cycle older than the current one (attesting
        ``current``): another validator opened the new cycle first. Such a seat is released
        (``releaseAt``) and its cycle forgotten; False while the release must wait."""
        held = self.state.seat_versions.get(model_id)
        if not current or held is None or held >= current:
            return True
        report.versions[model_id] = held
        return self._leave_cycle(model_id, held, report)

    def _validate_next_version(self, model_id: int, current: int, report: ValidatorReport) -> None:
        """The cycle attesting ``current`` settled Verified and the owner published a later
        version: leave this cycle, then ask for the key, which opens the latest version's."""
        if not self._leave_cycle(model_id, current, report):
            return
        latest = version_count(self.chain, model_id)
        report.versions[model_id] = latest
        log.info(
            "model %d: version %d is Verified and version %d was published since; validating it",
            model_id,
            current,
            latest,
        )
        self._ask_for_key(model_id, NO_ROUND, report)

    def now(self) -> int:
        """The timestamp the next block will carry: the contracts' "now" for what we send. (The
        latest block's is stale on a node that mines only on transactions, as anvil does.)"""
        return int(self.chain.get_block("pending")["timestamp"])

    def _commits_closed(
        self,
        model_id: int,
        rnd: Round,
        report: ValidatorReport,
        why: str,
        then: str = "asks for the key",
    ) -> bool:
        """Whether the round's commits have closed; the model then waits for the round's end."""
        if not (rnd.commit_end and self.now() > rnd.commit_end):
            return False
        report.waiting[model_id] = Waiting(
            f"round {rnd.number} to end ({why}), then it settles it and {then}", rnd.reveal_end
        )
        return True

    def _ask_for_key(self, model_id: int, rnd: Round, report: ValidatorReport) -> None:
        if self._commits_closed(
            model_id, rnd, report, "no key is requested or delivered while its commits are closed"
        ):
            return
        request = self.latest_request(model_id)
        if (
            request is not None
            and request[1].status == PurchaseStatus.PENDING
            and (self.now() <= request[1].deadline)
        ):
            report.waiting[model_id] = Waiting(
                f"the seller's node to deliver the key (request {request[0]})", request[1].deadline
            )
            return
        receipt = self.chain.transact(
            self.for_validator(
                self.chain.marketplace, "requestValidatorKey", model_id, self.x25519[1]
            ),
            self.signer,
        )
        ev = self.chain.marketplace.events.Purchased().process_receipt(receipt, errors=DISCARD)
        # The cycle this request joined (or opened): the one this seat and its record are for.
        version = int(self.chain.call(self.chain.validators.functions.attestedVersion(model_id)))
        self.state.seat_versions[model_id] = report.versions[model_id] = version
        self.state.save()
        log.info(
            "%s: asked for its key (request %d)",
            report.name(model_id),
            int(ev[0]["args"]["purchaseId"]),
        )
        report.requested.append(model_id)

    def latest_request(self, model_id: int) -> tuple[int, Purchase] | None:
        """(purchase id, purchase) of this validator's latest key request for the model."""
        events = self.chain.events(
            "ValidatorKeyRequested",
            from_block=self.state.start_block,
            modelId=model_id,
            validator=self.validator,
        )
        if not events:
            return None
        pid = int(events[-1]["args"]["purchaseId"])
        return pid, Purchase.from_call(
            self.chain.call(self.chain.marketplace.functions.purchase(pid))
        )

    def _finding(self, model_id: int) -> ModelRecord:
        """The model's record; the first time, with the finding of a check of its key."""
        record = self.state.records.get(model_id)
        if record is None:
            request = self.latest_request(model_id)
            if request is None:
                raise ChainError(
                    f"model {model_id}: the seat holds a key but no key request of "
                    f"{self.validator} was found; is the node's log history "
                    "pruned?"
                )
            record = ModelRecord(self.verify(model_id, request[0]))
            self.state.records[model_id] = record
            self.state.save()  # evaluated once: a later round commits the same finding
        return record

    def _commit(self, model_id: int, rnd: Round, report: ValidatorReport) -> None:
        record = self._finding(model_id)
        if self._commits_closed(
            model_id,
            rnd,
            report,
            "its commits closed before this validator could commit",
            then="commits in the next",
        ):
            return
        found = record.attestation
        c = record.commitment
        if c is None or c.revealed or c.round != rnd.number:
            salt = secrets.token_bytes(32)
            c = Commitment(
                rnd.number,
                salt,
                attestation_commitment(
                    self.chain.chain_id,
                    self.chain.validators.address,
                    model_id,
                    self.validator,
                    found.observed_hash,
                    found.work_digest,
                    salt,
                ),
            )
            record.commitment = c
        self.state.save()  # durable BEFORE the commit is sent: a restart can still reveal it
        v = self.chain.validators
        self.chain.transact(
            self.for_validator(v, "commitAttestation", model_id, c.commitment), self.signer
        )
        log.info(
            "%s: committed in round %d to hash 0x%s (%s), work digest 0x%s%s",
            report.name(model_id),
            rnd.number,
            found.observed_hash.hex(),
            "matches" if found.matches else "DOES NOT MATCH",
            found.work_digest.hex(),
            f": {found.reason}" if found.reason else "",
        )
        report.committed.append(found)
        rnd = Round.from_call(self.chain.call(v.functions.roundOf(model_id)))  # opened by it, maybe
        report.waiting[model_id] = until_commits_close(rnd)

    def _reveal(self, model_id: int, rnd: Round, report: ValidatorReport) -> None:
        if self.now() <= rnd.commit_end:
            report.waiting[model_id] = until_commits_close(rnd)
            return
        v = self.chain.validators.functions
        on_chain = bytes(self.chain.call(v.commitmentOf(model_id, self.validator)))
        record = self.state.records.get(model_id)
        if record is None or record.commitment is None or record.commitment.commitment != on_chain:
            reason = (
                f"the commitment on-chain (0x{on_chain.hex()}) is not one this node recorded "
                f"in {self.state.path} (was the state file replaced or lost?): it cannot be "
                "revealed, and its bonds are forfeited when the round ends"
            )
            log.error("%s: %s", report.name(model_id), reason)
            report.refused[model_id] = reason
            return
        found, c = record.attestation, record.commitment
        self.chain.transact(
            self.for_validator(
                self.chain.validators,
                "revealAttestation",
                model_id,
                found.observed_hash,
                found.work_digest,
                c.salt,
            ),
            self.signer,
        )
        c.revealed = True
        self.state.save()
        log.info("%s: revealed in round %d", report.name(model_id), rnd.number)
        report.revealed.append(found)
        report.waiting[model_id] = until_reveals_end(rnd)

    def _settle(self, model_id: int, report: ValidatorReport) -> ModelStatus:
        v = self.chain.validators
        try:
            receipt = self.chain.transact(v.functions.settle(model_id), self.signer)
        except ContractRevert as exc:
            if exc.context.get("error") != "ValidatorsAlreadySettled":
                raise
            return ModelStatus(self.chain.call(v.functions.status(model_id)))  # someone else did
        changed = v.events.StatusChanged().process_receipt(receipt, errors=DISCARD)
        status = ModelStatus(changed[0]["args"]["status"]) if changed else ModelStatus.UNVERIFIED
        report.settled[model_id] = status if changed else None
        log.info(
            "%s: settled %s",
            report.name(model_id),
            status.word if changed else "undecided (a new round opens with the next commit)",
        )
        return status

    def _release(self, model_id: int, version: int, seat: Seat, report: ValidatorReport) -> bool:
        """Release this validator's ``seat`` in the cycle attesting ``version`` (``releaseAt``);
        False while a key request must expire first (the model's wait is reported)."""
        if seat.state == SeatState.REQUESTED:  # the cycle settled before the key arrived
            request = self.latest_request(model_id)
            if request is not None and self.now() <= request[1].deadline:
                report.waiting[model_id] = Waiting(
                    "the key request to expire (the model settled before its key arrived), "
                    "then it releases the seat",
                    request[1].deadline,
                )
                return False
        v = self.chain.validators
        receipt = self.chain.transact(
            v.functions.releaseAt(model_id, version, self.validator), self.signer
        )
        events = v.events.SeatReleased().process_receipt(receipt, errors=DISCARD)
        returned, forfeited = (
            (int(events[0]["args"]["returned"]), int(events[0]["args"]["forfeited"]))
            if events
            else (0, 0)
        )
        report.released[model_id] = (returned, forfeited)
        log.info(
            "model %d version %d: seat released (%s returned, %s forfeited)",
            model_id,
            version,
            market.fmt_eth(returned),
            market.fmt_eth(forfeited),
        )
        return True
