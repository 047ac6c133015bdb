"""The validator agent: stake, ask for each new listing's key, fetch, re-hash, evaluate, and carry
the model through its commit–reveal rounds (contracts/Validators.sol) until it settles.

``ValidatorAgent.poll()`` is one pass; ``run(stop)`` loops it. One pass:

1. stake up to ``Validators.minStake`` if this account is not an active validator;
2. read new ``ModelListed`` events into the to-do set (``node.scanner.BlockScanner``, with the
   agent's own checkpoint in its state file). After a reorg the blocks above the fork point are
   read again, and models no longer listed on the new chain leave the to-do set;
3. for each model to do, the one step that is due, decided from the chain (the model's
   ``status``, its ``roundOf``, this validator's seat ``attestationOf``) and this node's record:

   - no seat, or a key request that expired: ``Marketplace.requestValidatorKey`` (the seller's
     worker answers it like a purchase);
   - key delivered and commits open (or no round yet): fetch, unseal, re-hash, evaluate (once; the
     outcome is kept in the record), draw a random 32-byte salt, write it durably with what it
     commits to, and only then send ``commitAttestation`` (the first commit opens a round);
   - committed, commits closed, reveals open: ``revealAttestation`` with the recorded salt;
   - the reveal period over and the model not settled: ``settle`` (anyone may; the agent does it
     when it is due). An undecided round: the agent commits again in the next one, with a new salt
     (a revealed salt is public);
   - the model settled (or this seat's round over without its reveal): ``release`` returns the
     seat's bonds to its stake, or forfeits them; the model is then done.

State. One file per (chain, validator account), ``state_path(data_dir, chain_id, address)``:
the chain checkpoint (``next_block``; from version 3 also ``recent_blocks``, [number, hash] of
the last blocks scanned), the to-do set and, per model, the finding and the commitment. A pass
holds an exclusive lock on it (``<file>.lock``) and reads it afresh, so the CLI's agent and the
UI's jobs for the same account take turns and never lose each other's salts.

Crash safety. The salt, the round it was drawn for, the observed hash, the work digest and the
commitment are written (atomic_write: fsync, rename, 0600) BEFORE the commit is sent, so a
validator killed between its commit and its reveal reveals after a restart. Whether a commit sent
before a crash was mined is the chain's to say: the seat is COMMITTED and ``commitmentOf`` holds
the recorded commitment once it was; until then the same commitment is sent again (the recorded
salt is reused within its round, so at most one of the two transactions can succeed). A salt is
never reused once revealed, nor in another round.

What is revealed, and how this node's own disk is kept from being held against a seller:
``node.attestation`` (``ModelCheck``, which fetches, re-hashes and evaluates the model).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from web3.logs import DISCARD

from node import market
from node.attestation import Attestation, Evaluator, ModelCheck
from node.config import Config
from node.content import keywrap
from node.errors import ChainError, ConfigError, ContractRevert, StoreError
from node.keyvault import atomic_write
from node.protocol import (
    ModelStatus,
    Purchase,
    PurchaseStatus,
    Round,
    Seat,
    SeatState,
    StakeInfo,
    attestation_commitment,
)
from node.revert import when
from node.scanner import Batch, BlockScanner, Checkpoint, poll_loop

log = logging.getLogger(__name__)

STATE_VERSION = 3  # 3: recent_blocks (version 2 files are read as they are)


def state_path(data_dir: str | os.PathLike, chain_id: int, address: str) -> Path:
    """The agent's state file for one account on one chain (shared by the CLI and the UI)."""
    return Path(data_dir) / f"validator-{chain_id}-{address.lower()}.json"


@dataclass
class Commitment:
    """A salt and what it commits to, kept durably from before the commit is sent."""

    round: int  # the round it was drawn for
    salt: bytes
    commitment: bytes
    revealed: bool = False

    def to_json(self) -> dict:
        return {
            "round": self.round,
            "salt": self.salt.hex(),
            "commitment": self.commitment.hex(),
            "revealed": self.revealed,
        }

    @classmethod
    def from_json(cls, doc: dict) -> Commitment:
        return cls(
            int(doc["round"]),
            bytes.fromhex(doc["salt"]),
            bytes.fromhex(doc["commitment"]),
            bool(doc["revealed"]),
        )


@dataclass
class ModelRecord:
    attestation: Attestation
    commitment: Commitment | None = None


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

    def about(self, model_id: int, now: int) -> str:
        """Where the model stands after this pass: what it waits for (and until when), or why a
        step did not happen."""
        wait = self.waiting.get(model_id)
        if wait is not None:
            return wait.describe(now)
        return self.retry.get(model_id) or self.refused.get(model_id) or "in progress"


class AgentState:
    """The agent's state file (module docstring: State) and its BlockScanner follower: the chain
    checkpoint, the to-do set, and per model the finding and the commitment."""

    def __init__(self, path: Path, chain, validator: str):
        self.path = path
        self.chain = chain
        self.validator = validator  # the account this state belongs to
        self._ident = {"chain_id": chain.chain_id, "validators": chain.validators.address.lower()}
        self.start_block = int(chain.deployment.get("block", 0) or 0)
        self.load()

    @contextlib.contextmanager
    def locked(self):
        """Hold ``<state>.lock`` exclusively (another agent on this file waits its turn)."""
        lock = self.path.with_name(self.path.name + ".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def load(self) -> None:
        self.checkpoint = Checkpoint(self.start_block - 1)
        self.todo: set[int] = set()
        self.records: dict[int, ModelRecord] = {}
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the validator state {self.path} ({exc}); it "
                "holds the salts of commitments not yet revealed: restore it, or "
                "move it away to start over (unrevealed commitments then forfeit "
                "their bonds)",
                path=str(self.path),
            ) from None
        if {k: doc.get(k) for k in self._ident} != self._ident:
            return  # another deployment (e.g. a fresh dev chain): start over
        owner = doc.get("validator")
        if owner and owner.lower() != self.validator.lower():
            raise ConfigError(
                f"the validator state {self.path} belongs to {owner}, not "
                f"{self.validator}: pass --state FILE (or another --data-dir) "
                "for this account",
                path=str(self.path),
            )
        self.checkpoint = Checkpoint.from_json(doc["next_block"], doc.get("recent_blocks"))
        self.todo = {int(m) for m in doc["todo"]}
        for key, rec in (doc.get("models") or {}).items():
            model_id = int(key)
            self.records[model_id] = ModelRecord(
                Attestation.from_json(model_id, rec["attestation"]),
                Commitment.from_json(rec["commitment"]) if rec.get("commitment") else None,
            )

    def save(self) -> None:
        models = {
            str(m): {
                "attestation": r.attestation.to_json(),
                "commitment": r.commitment.to_json() if r.commitment else None,
            }
            for m, r in sorted(self.records.items())
        }
        doc = {
            **self._ident,
            "version": STATE_VERSION,
            "validator": self.validator,
            "next_block": self.checkpoint.next_block,
            "recent_blocks": self.checkpoint.hashes_json(),
            "todo": sorted(self.todo),
            "models": models,
        }
        atomic_write(self.path, json.dumps(doc, indent=1).encode(), mode=0o600)

    # -- the BlockScanner's follower: listings into the to-do set --------------------------

    def listings_in(self, first: int, last: int) -> list:
        return self.chain.events("ModelListed", from_block=first, to_block=last)

    def load_checkpoint(self) -> Checkpoint:
        return self.checkpoint

    def apply_batch(self, batch: Batch) -> bool:
        self.todo.update(int(ev["args"]["modelId"]) for ev in batch.logs)
        self.checkpoint = batch.checkpoint
        self.save()
        return True

    def rewind(self, checkpoint: Checkpoint) -> None:
        """A reorg: the blocks above the fork point are scanned again; a model to do that the
        new chain does not list (its listing was reorganised away) leaves the to-do set, with
        its finding unless a commitment's salt is recorded (never lost: the listing and the
        commit may be mined again). The others are decided from the chain as in every pass."""
        for model_id in sorted(self.todo):
            if not self._listed(model_id):
                log.warning("model %d is no longer listed after a reorg; forgetting it", model_id)
                self.todo.discard(model_id)
                if model_id in self.records and self.records[model_id].commitment is None:
                    del self.records[model_id]
        self.checkpoint = checkpoint
        self.save()

    def _listed(self, model_id: int) -> bool:
        try:
            self.chain.call(self.chain.registry.functions.modelHash(model_id))
        except ContractRevert:
            return False
        return True


class ValidatorAgent:
    def __init__(
        self,
        chain,
        signer,
        store,
        state_path: str | os.PathLike,
        *,
        work_dir: str | os.PathLike,
        evaluator: Evaluator,
        stake_amount: int | None = None,
        confirmations: int = 0,
        batch_blocks: int = 2000,
    ):
        self.chain = chain
        self.signer = signer
        self.store = store
        self.evaluator = evaluator
        self.stake_amount = stake_amount
        self.work_dir = Path(work_dir)
        self.state_path = Path(state_path)
        self._x25519: tuple[bytes, bytes] | None = None
        self.state = AgentState(self.state_path, chain, signer.address)
        self.scanner = BlockScanner(
            chain,
            self.state.listings_in,
            start_block=self.state.start_block,
            confirmations=confirmations,
            batch_blocks=batch_blocks,
        )

    @classmethod
    def from_config(
        cls,
        config: Config,
        chain,
        signer,
        store,
        *,
        evaluator: Evaluator,
        stake_amount: int | None = None,
        state: str | os.PathLike | None = None,
        data_dir: str | os.PathLike | None = None,
    ) -> ValidatorAgent:
        """The agent ``config`` describes: its confirmations, its state file (``state``, else
        ``state_path`` in the data dir) and its work folder (``<data dir>/validate``), the data
        dir being ``config.data_dir`` unless ``data_dir`` names another (the UI's node folder)."""
        folder = Path(config.data_dir if data_dir is None else data_dir)
        return cls(
            chain,
            signer,
            store,
            state or state_path(folder, chain.chain_id, signer.address),
            work_dir=folder / "validate",
            evaluator=evaluator,
            stake_amount=stake_amount,
            confirmations=config.confirmations,
        )

    @property
    def todo(self) -> set[int]:
        """The models this agent still has a step to take for (from its state file)."""
        return self.state.todo

    @property
    def x25519(self) -> tuple[bytes, bytes]:
        if self._x25519 is None:
            self._x25519 = keywrap.derive_x25519(self.signer, self.chain.chain_id)
        return self._x25519

    # -- one pass -----------------------------------------------------------------------------

    def poll(self, models: Iterable[int] | None = None) -> ValidatorReport:
        """One pass over the to-do set (or over ``models`` only: no key is asked for others)."""
        with self.state.locked():
            self.state.load()  # what another agent on this file did since
            return self._pass(models)

    def _pass(self, models: Iterable[int] | None) -> ValidatorReport:
        report = ValidatorReport()
        self.ensure_staked(report)
        self.scanner.scan(self.state)
        for model_id in sorted(self.state.todo if models is None else set(models)):
            try:
                self._handle(model_id, report)
            except (StoreError, OSError) as exc:
                # Our store or our disk, not the content: never committed (module docstring).
                reason = (
                    str(exc)
                    if isinstance(exc, StoreError)
                    else (f"this machine's disk refused it: {exc}")
                )
                log.warning(
                    "model %d not checked this pass, nothing committed: %s; will retry next pass",
                    model_id,
                    reason,
                )
                report.retry[model_id] = reason
            except ContractRevert as exc:
                log.warning("model %d: %s; will retry next pass", model_id, exc)
                report.refused[model_id] = str(exc)
            except ChainError:
                raise  # the chain is unreachable or misbehaves: no model can go on this pass
            except Exception as exc:  # one model's surprise must not stop the others
                log.exception("model %d: unexpected failure; will retry next pass", model_id)
                report.retry[model_id] = f"unexpected failure: {exc!r}"
        return report

    def run(self, stop: threading.Event, interval: float = 2.0) -> None:
        log.info("validator agent for %s on chain %d", self.signer.address, self.chain.chain_id)
        poll_loop(self.poll, stop, interval)

    # -- steps --------------------------------------------------------------------------------

    def ensure_staked(self, report: ValidatorReport | None = None) -> int:
        """Stake up to the minimum (or ``stake_amount``) when not an active validator (a forfeit
        can take a stake below the minimum: it is topped up)."""
        v = self.chain.validators.functions
        if self.chain.call(v.isActiveValidator(self.signer.address)):
            return 0
        info = StakeInfo.from_call(self.chain.call(v.stakeOf(self.signer.address)))
        if info.unlock_at:
            raise ChainError(
                f"{self.signer.address} asked to unstake (unlocks at "
                f"{when(info.unlock_at)}); it cannot validate until it has unstaked "
                "and staked again"
            )
        need = max(market.min_stake(self.chain) - info.amount, self.stake_amount or 0)
        market.stake(self.chain, self.signer, need)
        log.info("staked %s as a validator", market.fmt_eth(need))
        if report:
            report.staked = need
        return need

    def _finish(self, model_id: int, report: ValidatorReport) -> None:
        self.state.todo.discard(model_id)
        self.state.records.pop(model_id, None)
        self.state.save()
        report.done.append(model_id)

    def now(self) -> int:
        """The timestamp the next block will carry: the contracts' "now" for what we send. (The
        latest block's is stale on a node that mines only on transactions, as anvil does.)"""
        return int(self.chain.get_block("pending")["timestamp"])

    def _handle(self, model_id: int, report: ValidatorReport) -> None:
        v, me = self.chain.validators.functions, self.signer.address
        status = ModelStatus(self.chain.call(v.status(model_id)))
        seat = Seat.from_call(self.chain.call(v.attestationOf(model_id, me)))
        if seat.state == SeatState.RELEASED or (
            seat.state == SeatState.NONE and status != ModelStatus.UNVERIFIED
        ):
            self._finish(model_id, report)
            return
        rnd = Round.from_call(self.chain.call(v.roundOf(model_id)))
        if status == ModelStatus.UNVERIFIED and rnd.commit_end and self.now() > rnd.reveal_end:
            status = self._settle(model_id, report)
            rnd = Round.from_call(self.chain.call(v.roundOf(model_id)))
        if status != ModelStatus.UNVERIFIED and seat.state == SeatState.NONE:
            self._finish(model_id, report)  # settled by this pass; it held no seat
        elif status != ModelStatus.UNVERIFIED:
            self._release(model_id, seat, report)
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
                "model %d: the commitment of round %d was never revealed; releasing "
                "the seat (its bonds are forfeited)",
                model_id,
                seat.round,
            )
            self._release(model_id, seat, report)
        elif seat.state == SeatState.COMMITTED:
            self._reveal(model_id, rnd, report)
        else:  # revealed in the open round
            report.waiting[model_id] = Waiting(
                "the reveal period to end, then it settles", rnd.reveal_end
            )

    def _ask_for_key(self, model_id: int, rnd: Round, report: ValidatorReport) -> None:
        if rnd.commit_end and self.now() > rnd.commit_end:
            report.waiting[model_id] = Waiting(
                f"round {rnd.number} to end (no key is requested or delivered while its commits "
                "are closed), then it settles it and asks for the key",
                rnd.reveal_end,
            )
            return
        request = self._latest_request(model_id)
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
            self.chain.marketplace.functions.requestValidatorKey(model_id, self.x25519[1]),
            self.signer,
        )
        ev = self.chain.marketplace.events.Purchased().process_receipt(receipt, errors=DISCARD)
        log.info(
            "model %d: asked for its key (request %d)", model_id, int(ev[0]["args"]["purchaseId"])
        )
        report.requested.append(model_id)

    def _latest_request(self, model_id: int) -> tuple[int, Purchase] | None:
        """(purchase id, purchase) of this validator's latest key request for the model."""
        start = int(self.chain.deployment.get("block", 0) or 0)
        events = self.chain.events(
            "ValidatorKeyRequested",
            from_block=start,
            modelId=model_id,
            validator=self.signer.address,
        )
        if not events:
            return None
        pid = int(events[-1]["args"]["purchaseId"])
        return pid, Purchase.from_call(
            self.chain.call(self.chain.marketplace.functions.purchase(pid))
        )

    def _commit(self, model_id: int, rnd: Round, report: ValidatorReport) -> None:
        record = self.state.records.get(model_id)
        if record is None:
            request = self._latest_request(model_id)
            if request is None:
                raise ChainError(
                    f"model {model_id}: the seat holds a key but no key request of "
                    f"{self.signer.address} was found; is the node's log history "
                    "pruned?"
                )
            record = ModelRecord(self.verify(model_id, request[0]))
            self.state.records[model_id] = record
            self.state.save()  # evaluated once: a later round commits the same finding
        if rnd.commit_end and self.now() > rnd.commit_end:
            report.waiting[model_id] = Waiting(
                f"round {rnd.number} to end (its commits closed before this validator could "
                "commit), then it settles it and commits in the next",
                rnd.reveal_end,
            )
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
                    self.signer.address,
                    found.observed_hash,
                    found.work_digest,
                    salt,
                ),
            )
            record.commitment = c
        self.state.save()  # durable BEFORE the commit is sent: a restart can still reveal it
        v = self.chain.validators.functions
        self.chain.transact(v.commitAttestation(model_id, c.commitment), self.signer)
        log.info(
            "model %d: committed in round %d to hash 0x%s (%s), work digest 0x%s%s",
            model_id,
            rnd.number,
            found.observed_hash.hex(),
            "matches" if found.matches else "DOES NOT MATCH",
            found.work_digest.hex(),
            f": {found.reason}" if found.reason else "",
        )
        report.committed.append(found)
        rnd = Round.from_call(self.chain.call(v.roundOf(model_id)))  # opened by this commit, maybe
        report.waiting[model_id] = Waiting(
            f"commits of round {rnd.number} to close, then it reveals", rnd.commit_end
        )

    def _reveal(self, model_id: int, rnd: Round, report: ValidatorReport) -> None:
        if self.now() <= rnd.commit_end:
            report.waiting[model_id] = Waiting(
                f"commits of round {rnd.number} to close, then it reveals", rnd.commit_end
            )
            return
        v = self.chain.validators.functions
        on_chain = bytes(self.chain.call(v.commitmentOf(model_id, self.signer.address)))
        record = self.state.records.get(model_id)
        if record is None or record.commitment is None or record.commitment.commitment != on_chain:
            reason = (
                f"the commitment on-chain (0x{on_chain.hex()}) is not one this node recorded "
                f"in {self.state_path} (was the state file replaced or lost?): it cannot be "
                "revealed, and its bonds are forfeited when the round ends"
            )
            log.error("model %d: %s", model_id, reason)
            report.refused[model_id] = reason
            return
        found, c = record.attestation, record.commitment
        self.chain.transact(
            v.revealAttestation(model_id, found.observed_hash, found.work_digest, c.salt),
            self.signer,
        )
        c.revealed = True
        self.state.save()
        log.info("model %d: revealed in round %d", model_id, rnd.number)
        report.revealed.append(found)
        report.waiting[model_id] = Waiting(
            "the reveal period to end, then it settles", rnd.reveal_end
        )

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
            "model %d: settled %s",
            model_id,
            status.word if changed else "undecided (a new round opens with the next commit)",
        )
        return status

    def _release(self, model_id: int, seat: Seat, report: ValidatorReport) -> None:
        if seat.state == SeatState.REQUESTED:  # the model settled before the key arrived
            request = self._latest_request(model_id)
            if request is not None and self.now() <= request[1].deadline:
                report.waiting[model_id] = Waiting(
                    "the key request to expire (the model settled before its key arrived), "
                    "then it releases the seat",
                    request[1].deadline,
                )
                return
        v = self.chain.validators
        receipt = self.chain.transact(
            v.functions.release(model_id, self.signer.address), self.signer
        )
        events = v.events.SeatReleased().process_receipt(receipt, errors=DISCARD)
        returned, forfeited = (
            (int(events[0]["args"]["returned"]), int(events[0]["args"]["forfeited"]))
            if events
            else (0, 0)
        )
        report.released[model_id] = (returned, forfeited)
        log.info(
            "model %d: seat released (%s returned, %s forfeited)",
            model_id,
            market.fmt_eth(returned),
            market.fmt_eth(forfeited),
        )
        self._finish(model_id, report)  # settled, or this seat is closed for good

    # -- the work -----------------------------------------------------------------------------

    def verify(self, model_id: int, purchase_id: int) -> Attestation:
        """Fetch, unseal, extract and re-hash the model; evaluate it on its declared eval set."""
        return ModelCheck(self.chain, self.store, self.evaluator, self.work_dir).verify(
            model_id, purchase_id, self.x25519[0]
        )
