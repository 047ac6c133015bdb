"""The validator agent's state file: one per (chain, validator account), shared by the CLI's agent
and the UI's jobs (``node.validator`` explains what the agent does with it).

It holds the chain checkpoint (``next_block``; from version 3 also ``recent_blocks``, [number,
hash] of the last blocks scanned), the to-do set, the models this validator verified whose
rewards it claims (``rewarding``, from version 4), per model the version whose validation cycle
this validator's seat is in (``seat_versions``, from version 5; 1 for the models of an older
file: its single cycle) and, per model, the finding and the commitment of that cycle: the salt,
the round it was drawn for and what it commits to, written (atomic_write: fsync, rename, 0600)
BEFORE the commit is sent. A pass holds an exclusive lock on it
(``<file>.lock``) and reads it afresh, so two agents on one file take turns and never lose each
other's salts. ``AgentState`` is also the agent's ``node.scanner.BlockScanner`` follower: new
listings, and models whose owner published a new version (a new validation cycle once the
current one is Verified), go into the to-do set.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from node.attestation import Attestation
from node.errors import ConfigError, ContractRevert
from node.keyvault import atomic_write
from node.scanner import Batch, Checkpoint, deployment_block

log = logging.getLogger("node.validator")  # one logger for the agent, as before the split

STATE_VERSION = 5  # 3: recent_blocks, 4: rewarding, 5: seat_versions (older files are read)
FIRST_CYCLE_VERSION = 1  # the cycle of a seat an older file recorded (it knew only one cycle)
# The events that give the agent a model to validate: a listing, and a later version of one.
VALIDATION_TRIGGERS = ("ModelListed", "VersionPublished")


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


class AgentState:
    """The agent's state file (the module docstring) and its BlockScanner follower: the chain
    checkpoint, the to-do set, and per model the version of this validator's seat, the finding
    and the commitment."""

    def __init__(self, path: Path, chain, validator: str):
        self.path = path
        self.chain = chain
        self.validator = validator  # the account this state belongs to
        self._ident = {"chain_id": chain.chain_id, "validators": chain.validators.address.lower()}
        self.start_block = deployment_block(chain)
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
        self.rewarding: set[int] = set()  # models this validator verified: their rewards
        self.records: dict[int, ModelRecord] = {}
        # model -> the version whose cycle this validator's seat (and its record) is in
        self.seat_versions: dict[int, int] = {}
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
        self.rewarding = {int(m) for m in doc.get("rewarding", ())}
        for key, rec in (doc.get("models") or {}).items():
            model_id = int(key)
            self.records[model_id] = ModelRecord(
                Attestation.from_json(model_id, rec["attestation"]),
                Commitment.from_json(rec["commitment"]) if rec.get("commitment") else None,
            )
        self.seat_versions = {int(m): int(v) for m, v in (doc.get("seat_versions") or {}).items()}
        if int(doc.get("version", 1)) < 5:  # written before cycles: every seat is in the first
            for model_id in self.todo | self.records.keys():
                self.seat_versions.setdefault(model_id, FIRST_CYCLE_VERSION)

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
            "rewarding": sorted(self.rewarding),
            "seat_versions": {str(m): v for m, v in sorted(self.seat_versions.items())},
            "models": models,
        }
        atomic_write(self.path, json.dumps(doc, indent=1).encode(), mode=0o600)

    def forget_cycle(self, model_id: int) -> None:
        """Drop the model's seat version, finding and commitment (its cycle is behind it)."""
        self.seat_versions.pop(model_id, None)
        self.records.pop(model_id, None)

    # -- the BlockScanner's follower: listings and new versions into the to-do set ----------

    def listings_in(self, first: int, last: int) -> list:
        """The VALIDATION_TRIGGERS of blocks ``first``..``last``, in chain order."""
        found = [
            ev
            for name in VALIDATION_TRIGGERS
            for ev in self.chain.events(name, from_block=first, to_block=last)
        ]
        return sorted(found, key=lambda ev: (ev["blockNumber"], ev["logIndex"]))

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
                    self.forget_cycle(model_id)
        self.checkpoint = checkpoint
        self.save()

    def _listed(self, model_id: int) -> bool:
        try:
            self.chain.call(self.chain.registry.functions.modelHash(model_id))
        except ContractRevert:
            return False
        return True
