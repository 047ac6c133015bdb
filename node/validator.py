"""The validator agent: stake, ask for each new listing's key, fetch, re-hash, evaluate, and carry
the model through its commit–reveal rounds (contracts/Validators.sol) until it settles; and again
for each later version its owner publishes once the current one is Verified (a new validation
cycle, ``node.rounds``).

``ValidatorAgent.poll()`` is one pass; ``run(stop)`` loops it. One pass:

1. stake up to ``Validators.minStake`` if this account is not an active validator;
2. read new ``ModelListed`` and ``VersionPublished`` events into the to-do set (``node.scanner.BlockScanner``, with the
   agent's own checkpoint in its state file). After a reorg the blocks above the fork point are
   read again, and models no longer listed on the new chain leave the to-do set;
3. for each model to do, the one step that is due, decided from the chain (the model's
   ``status``, its ``roundOf``, this validator's seat ``attestationOf``) and this node's record
   (``node.rounds.RoundSteps``):

   - no seat, or a key request that expired: ``Marketplace.requestValidatorKey`` (the seller's
     worker answers it like a purchase);
   - key delivered and commits open (or no round yet): fetch, unseal, re-hash, evaluate (once; the
     outcome is kept in the record), draw a random 32-byte salt, write it durably with what it
     commits to, and only then send ``commitAttestation`` (the first commit opens a round);
   - committed, commits closed, reveals open: ``revealAttestation`` with the recorded salt;
   - the reveal period over and the model not settled: ``settle`` (anyone may; the agent does it
     when it is due). An undecided round: the agent commits again in the next one, with a new salt
     (a revealed salt is public);
   - the model settled (or this seat's round over without its reveal): ``releaseAt`` returns the
     seat's bonds to its stake, or forfeits them; the model is then done until a later version
     is published;
   - the current cycle settled Verified and a later version was published (``opensNewCycle``):
     release this seat if still open, forget the cycle's record and ask for the key, which opens
     the new cycle; a seat left in an older cycle (another validator opened the new one first)
     is released with ``releaseAt``;
4. for each model this validator verified, and each version of it this validator verified
   (``verifierWeightAt``), ``claimValidatorRewardAt`` of its share of the sales fees, in ETH and
   in the listing's ERC-20 token, whenever some is pending (it is credited to the validator's
   Marketplace balance, which only the validator withdraws).

Hot and cold keys. The validator (the cold wallet that staked) may name an attester
(``Validators.setAttester``): an agent built with the attester's signer and ``validator=`` the
validator's address does all of the above for it through the ``...For`` calls (key requests,
commits, reveals, reward claims; settle and release are anyone's), and never needs the cold key:
it does not stake (the validator must be active), and the stake, bonds and rewards stay the
validator's. The key requests carry the attester's own X25519 key.

State (``node.agentstate``). One file per (chain, validator account), ``state_path(data_dir,
chain_id, validator)``, whichever key the agent signs with: the chain checkpoint
(``next_block``; from version 3 also ``recent_blocks``, [number, hash] of the last blocks
scanned), the to-do set, the models whose rewards it claims and, per model, the version whose
cycle this validator's seat is in, the finding and the commitment. A pass
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

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from eth_utils import is_address, to_checksum_address

from node import market, tokens
from node.agentstate import STATE_VERSION, AgentState, Commitment, ModelRecord, state_path
from node.amounts import ETH
from node.attestation import Attestation, Evaluator, ModelCheck
from node.config import Config
from node.errors import ChainError, ConfigError, ContractRevert, InputError, StoreError
from node.protocol import StakeInfo
from node.revert_sentences import when
from node.rounds import RoundSteps, ValidatorReport, Waiting
from node.scanner import BlockScanner, poll_loop
from node.versions import version_count

__all__ = [
    "STATE_VERSION",
    "AgentState",
    "Commitment",
    "ModelRecord",
    "ValidatorAgent",
    "ValidatorReport",
    "Waiting",
    "attester_address",
    "set_attester",
    "state_path",
]

log = logging.getLogger(__name__)

NO_ATTESTER = "none"  # what names no attester (the validator attests itself)
NO_ATTESTER_ADDRESS = "0x" + "00" * 20  # setAttester's address(0)


def attester_address(text: str) -> str:
    """The address ``setAttester`` is given for ``text``: a 0x address (checksummed), or the
    zero address for "none" (the validator attests itself again)."""
    text = (text or "").strip()
    if text.lower() == NO_ATTESTER:
        return NO_ATTESTER_ADDRESS
    if not is_address(text):
        raise InputError(
            f"{text!r} is not an attester address: give the hot key's address (0x and 40 hex "
            f'digits), or "{NO_ATTESTER}" to attest with the validator\'s own key again'
        )
    return to_checksum_address(text)


def _validator_address(text: str) -> str:
    if not is_address(text):
        raise InputError(
            f"validator {text!r} is not an address: give the address (0x and 40 hex digits) of "
            "the validator that named this wallet its attester"
        )
    return to_checksum_address(text)


def set_attester(chain, signer, attester: str):
    """``Validators.setAttester`` from the validator's (cold) wallet ``signer``: ``attester``
    (``attester_address``) may then request keys, commit and reveal for it, and nothing else;
    the old attester is revoked. Returns the receipt."""
    return chain.transact(
        chain.validators.functions.setAttester(attester_address(attester)), signer
    )


class ValidatorAgent:
    """Stake, follow the listings, and carry each model through its rounds (``RoundSteps``),
    checking it (``node.attestation.ModelCheck``) before its first commit."""

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
        validator: str | None = None,
    ):
        self.chain = chain
        self.signer = signer
        # Whose seats these are (the module docstring): the signer, or the validator it attests for.
        self.validator = _validator_address(validator) if validator else signer.address
        self.store = store
        self.evaluator = evaluator
        self.stake_amount = stake_amount
        self.work_dir = Path(work_dir)
        self.state_path = Path(state_path)
        self.state = AgentState(self.state_path, chain, self.validator)
        self.scanner = BlockScanner(
            chain, self.state.listings_in, confirmations=confirmations, batch_blocks=batch_blocks
        )
        self.rounds = RoundSteps(chain, signer, self.state, self.verify)

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
        validator: str | None = None,
    ) -> ValidatorAgent:
        """The agent ``config`` describes: its confirmations, its state file (``state``, else
        ``state_path`` in the data dir) and its work folder (``<data dir>/validate``), the data
        dir being ``config.data_dir`` unless ``data_dir`` names another (the UI's node folder);
        ``validator``: the validator that named ``signer`` its attester (default: the signer)."""
        folder = Path(config.data_dir if data_dir is None else data_dir)
        validator = validator or signer.address
        return cls(
            chain,
            signer,
            store,
            state or state_path(folder, chain.chain_id, validator),
            work_dir=folder / "validate",
            evaluator=evaluator,
            stake_amount=stake_amount,
            confirmations=config.confirmations,
            validator=validator,
        )

    @property
    def todo(self) -> set[int]:
        """The models this agent still has a step to take for (from its state file)."""
        return self.state.todo

    @property
    def x25519(self) -> tuple[bytes, bytes]:
        return self.rounds.x25519

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
            self._guarded(model_id, report, self.rounds.step)
        for model_id in sorted(self.state.rewarding):
            self._guarded(model_id, report, self.claim_rewards)
        return report

    def _guarded(self, model_id: int, report: ValidatorReport, step) -> None:
        """``step(model_id, report)``; a failure of this model's step is reported and retried
        next pass, without stopping the others (an unreachable chain stops the pass)."""
        try:
            step(model_id, report)
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

    def run(self, stop: threading.Event, interval: float = 2.0) -> None:
        log.info(
            "validator agent for %s%s on chain %d",
            self.validator,
            f" (attester {self.signer.address})" if self.rounds.attesting else "",
            self.chain.chain_id,
        )
        poll_loop(self.poll, stop, interval)

    def now(self) -> int:
        """The contracts' "now" for what this agent sends (``RoundSteps.now``)."""
        return self.rounds.now()

    # -- steps --------------------------------------------------------------------------------

    def ensure_staked(self, report: ValidatorReport | None = None) -> int:
        """Stake up to the minimum (or ``stake_amount``) when not an active validator (a forfeit
        can take a stake below the minimum: it is topped up)."""
        v = self.chain.validators.functions
        if self.rounds.attesting:
            self._check_attester()
        if self.chain.call(v.isActiveValidator(self.validator)):
            return 0
        info = StakeInfo.from_call(self.chain.call(v.stakeOf(self.validator)))
        if info.unlock_at:
            raise ChainError(
                f"{self.validator} asked to unstake (unlocks at "
                f"{when(info.unlock_at)}); it cannot validate until it has unstaked "
                "and staked again"
            )
        need = max(market.min_stake(self.chain) - info.amount, self.stake_amount or 0)
        if self.rounds.attesting:
            raise ChainError(
                f"validator {self.validator} is not an active validator (stake "
                f"{market.fmt_eth(info.amount)}, minimum {market.fmt_eth(market.min_stake(self.chain))}); "
                f"this agent holds only its attester key {self.signer.address}: stake from the "
                "validator's wallet (`modex validator stake` or the Validate page)"
            )
        market.stake(self.chain, self.signer, need)
        log.info("staked %s as a validator", market.fmt_eth(need))
        if report:
            report.staked = need
        return need

    def _check_attester(self) -> None:
        named = self.chain.call(self.chain.validators.functions.attesterOf(self.validator))
        if named.lower() != self.signer.address.lower():
            raise ConfigError(
                f"validator {self.validator} has not named {self.signer.address} its attester "
                f"(it names {NO_ATTESTER if named == NO_ATTESTER_ADDRESS else named}): run `modex validator set-attester {self.signer.address}` "
                "with the validator's wallet, or start the agent with the validator's own key",
                key="validator",
            )

    def claim_rewards(self, model_id: int, report: ValidatorReport) -> None:
        """Claim this validator's pending share of the model's sales fees in ETH and in the
        listing's token, for every version it verified (each Verified version's verifiers have
        their own reward book; ``claimValidatorRewardAt`` credits the validator's Marketplace
        balance whoever sends it)."""
        m, v = self.chain.marketplace.functions, self.chain.validators.functions
        payment_tokens = dict.fromkeys((ETH, tokens.payment_token(self.chain, model_id)))
        for version in range(1, version_count(self.chain, model_id) + 1):
            if not self.chain.call(v.verifierWeightAt(model_id, version, self.validator)):
                continue
            for token in payment_tokens:
                pending = int(
                    self.chain.call(
                        m.pendingValidatorRewardAt(model_id, version, self.validator, token.address)
                    )
                )
                if not pending:
                    continue
                self.chain.transact(
                    m.claimValidatorRewardAt(self.validator, model_id, version, token.address),
                    self.signer,
                )
                log.info(
                    "model %d version %d: claimed a reward of %s",
                    model_id,
                    version,
                    token.format(pending),
                )
                report.rewards.append((model_id, token, pending))

    # -- the work -----------------------------------------------------------------------------

    def verify(self, model_id: int, purchase_id: int) -> Attestation:
        """Fetch, unseal, extract and re-hash the model; evaluate it on its declared eval set."""
        return ModelCheck(self.chain, self.store, self.evaluator, self.work_dir).verify(
            model_id, purchase_id, self.x25519[0]
        )
