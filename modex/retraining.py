"""Retraining a listed model on its buyers' feedback (issue 15 §4): the one home of what `modex
retrain` and the worker's retraining job (`modex worker --retrain-after N`) do.

``retrain_listing(stack, model_id, ...)``, as the model's owner:
1. read the feedback (node/feedback.py: every item anchored for the model, about any of its
   versions, decrypted with the owner's wallet; withdrawn ones skipped; it refuses anyone but
   the owner and an unknown model). Items with a label are trained on; a note without a label,
   or a label the classifier does not have, is read but cannot be trained on;
2. the latest version's folder: the one given (its model hash must be the latest version's), or
   decrypted from the store with the key vault's content key and verified against the on-chain
   hash (``node.fetch.decrypt_published``) into a private temporary folder;
3. ``ml.retrain.retrain``: fine-tune on the feedback plus replayed training rows, gated on the
   public eval set (nothing is written when it regresses by more than the margin);
4. when the gate lets the candidate through (and not a dry run), publish it as the next version
   (``node.publish.publish_version``: its card and changelog.json say what it was trained on).

The worker's job (``RetrainJob``) runs that for each model the worker's account owns once
``retrain_after`` labelled items it has not used yet have come in, and records the CIDs of the
items each run used in a small state file (``Config.retrain_state_path``, written atomically)
before it publishes, so a restart never retrains on the same items again. A run the gate refuses
uses its items too (the same items and seed would be refused again). node/ never imports ml/:
this wiring lives here.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ml import data
from ml.retrain import RetrainResult, retrain
from node import feedback, publish, versions
from node.content.manifest import model_hash
from node.errors import InputError, ModexError
from node.fetch import content_ref, decrypt_published, load_metadata, sale_terms
from node.keyvault import atomic_write

log = logging.getLogger(__name__)


@dataclass
class RetrainOutcome:
    """What one retraining of a listing did (``summary()`` says it in words)."""

    model_id: int
    parent_version: int  # the version retrained (the latest when the run began)
    read: int  # feedback items read (withdrawn ones are never read)
    used: list[str] = field(default_factory=list)  # CIDs of the labelled items given to ml
    result: RetrainResult | None = None  # None: nothing to train on
    dry_run: bool = False
    version: int | None = None  # the version published; None when none was
    tx_hash: str = ""
    kept_at: str | None = None  # where the candidate stays (--out), if anywhere

    @property
    def untrainable(self) -> int:
        return self.read - len(self.used)

    def summary(self) -> str:
        head = f"model {self.model_id}"
        if self.result is None:
            if not self.read:
                return f"{head}: no feedback to retrain on (withdrawn items are skipped); nothing trained"
            return (
                f"{head}: {self.read} feedback item(s), none with a label to train on (a note "
                "says what is wrong but not the right label); nothing trained"
            )
        entry, result = self.result.changelog, self.result
        lines = [
            f"{head}: retrained version {self.parent_version} on {len(self.used)} feedback "
            f"item(s) ({entry['feedback_trained']} trained on, {entry['feedback_held_out']} "
            f"held out, {entry['feedback_in_eval_set']} left out as texts of the public eval "
            f"set) with {entry['replay_rows']} replayed training rows"
            + (
                f"; {self.untrainable} item(s) without a usable label skipped"
                if self.untrainable
                else ""
            ),
            f"  {entry['eval_set']} accuracy {_moved(entry['accuracy'])}, macro-F1 "
            f"{_moved(entry['macro_f1'])}"
            + (
                f"; held-out feedback accuracy {_moved(entry['holdout_accuracy'])}"
                if entry["holdout_accuracy"]
                else ""
            ),
            f"  {result.reason}",
        ]
        if not result.published:
            lines.append("  nothing was published: the current version stays")
        elif self.version is not None:
            lines.append(
                f"  published as version {self.version} of model {self.model_id} ({self.tx_hash})"
            )
        else:
            lines.append("  dry run: nothing was published")
        if self.kept_at:
            lines.append(f"  the new version's folder: {self.kept_at}")
        return "\n".join(lines)


def _moved(change: dict) -> str:
    return f"{change['before']} -> {change['after']} ({change['delta']:+})"


def trainable(items: list[feedback.FeedbackItem]) -> list[feedback.FeedbackItem]:
    """The items ml can train on: a label the classifier has (a note alone is not one)."""
    return [i for i in items if i.label is not None and 0 <= i.label < len(data.LABELS)]


def latest_folder(stack, model_id: int, given: Path | None, into: Path) -> tuple[int, Path]:
    """(the latest version's number, its folder): ``given``, once its model hash is checked to be
    that version's, or decrypted from the store into ``into``."""
    number = versions.version_count(stack.chain, model_id)
    if given is None:
        fetched = decrypt_published(stack.chain, stack.store, stack.vault, model_id, into)
        return fetched.version, fetched.out_dir
    listed, _cid = versions.content_of(stack.chain, model_id, number)
    if not Path(given).is_dir():
        raise InputError(f"--from {given} is not a folder: give the latest version's folder")
    if model_hash(given) != listed:
        raise InputError(
            f"{given} is not the latest version ({number}) of model {model_id}: its model hash "
            f"is not 0x{listed.hex()}; give that version's folder, or leave out --from to "
            "decrypt it from the store",
            what="--from",
        )
    return number, Path(given)


def retrain_listing(
    stack,
    model_id: int,
    *,
    from_dir: Path | None = None,
    out_dir: Path | None = None,
    dry_run: bool = False,
    items: list[feedback.FeedbackItem] | None = None,
    before_publish: Callable[[list[str]], None] | None = None,
    **options,
) -> RetrainOutcome:
    """Retrain ``model_id``'s latest version on its feedback (``items``: those read already)
    and publish the result when the gate accepts it (see the module docstring). ``options``:
    ml.retrain.retrain's settings (seed, max_regression, replay_rows, ...). ``before_publish``
    is called with the used items' CIDs right before the new version is published."""
    if items is None:
        items = feedback.read_feedback(stack.chain, stack.store, stack.signer, model_id)
    usable = trainable(items)
    outcome = RetrainOutcome(
        model_id, versions.version_count(stack.chain, model_id), len(items), dry_run=dry_run
    )
    if not usable:
        return outcome
    outcome.used = [i.cid for i in usable]
    with tempfile.TemporaryDirectory(prefix="modex-retrain-") as work:
        outcome.parent_version, parent = latest_folder(
            stack, model_id, from_dir, Path(work) / "current"
        )
        candidate = Path(out_dir) if out_dir else Path(work) / "candidate"
        pairs = [(i.input, i.label) for i in usable]
        outcome.result = retrain(parent, pairs, candidate, **options)
        if not outcome.result.published:
            return outcome
        outcome.kept_at = str(candidate) if out_dir else None
        if dry_run:
            return outcome
        if before_publish is not None:
            before_publish(outcome.used)
        published = publish_candidate(stack, model_id, candidate)
    outcome.version, outcome.tx_hash = published.version, published.tx_hash
    return outcome


def publish_candidate(stack, model_id: int, folder: Path) -> publish.PublishedVersion:
    """``folder`` published as the next version of ``model_id``, the listing's description
    carried over (`modex publish --new-version` does the same); its card is the folder's."""
    _hash, metadata_cid = content_ref(stack.chain, model_id)
    info = publish.version_info(load_metadata(stack.store, metadata_cid))
    return publish.publish_version(
        stack.chain,
        stack.signer,
        stack.store,
        stack.vault,
        model_id,
        folder,
        info,
        cid_profile=stack.config.cid_profile,
    )


class RetrainState:
    """The job's state file: per model, the CIDs of the feedback items a retraining used."""

    def __init__(self, path: Path, chain_id: int, registry: str):
        self.path = Path(path)
        self._ident = {"chain_id": chain_id, "registry": registry.lower()}
        self.used: dict[int, set[str]] = {}
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise InputError(
                f"cannot read the retraining state {self.path} ({exc}): move it away to start "
                "afresh (every item not withdrawn then counts as new)",
                path=str(self.path),
            ) from None
        if {k: doc.get(k) for k in self._ident} != self._ident:
            log.warning("retraining state %s belongs to another deployment; starting afresh", path)
            return
        self.used = {int(k): set(v) for k, v in doc.get("used", {}).items()}

    def mark_used(self, model_id: int, cids: list[str]) -> None:
        """Record ``cids`` as used for ``model_id``, durably (atomic write, fsync'd)."""
        self.used.setdefault(model_id, set()).update(cids)
        doc = {**self._ident, "used": {str(k): sorted(v) for k, v in sorted(self.used.items())}}
        atomic_write(self.path, json.dumps(doc, indent=1, sort_keys=True).encode(), mode=0o600)


class RetrainJob:
    """The worker's retraining job: ``poll()`` retrains each model the account owns that has at
    least ``retrain_after`` labelled feedback items it has not used yet (``options``: ml's
    settings, as for ``retrain_listing``); ``run(stop, interval)`` loops it."""

    def __init__(self, stack, *, retrain_after: int, state_path: Path | None = None, **options):
        if retrain_after < 1:
            raise InputError(f"retrain_after must be 1 or more feedback items, not {retrain_after}")
        chain = stack.chain
        self.stack, self.retrain_after, self.options = stack, retrain_after, options
        path = state_path or stack.config.retrain_state_path(chain.chain_id)
        self.state = RetrainState(path, chain.chain_id, chain.registry.address)
        self._failed: dict[int, frozenset[str]] = {}  # the items of a run that raised, in memory

    def owned_models(self) -> list[int]:
        """The models with feedback anchored whose owner is this worker's account."""
        chain, me = self.stack.chain, self.stack.signer.address.lower()
        ids = sorted({int(e["args"]["modelId"]) for e in chain.events("FeedbackSent")})
        return [m for m in ids if str(sale_terms(chain, m).owner).lower() == me]

    def fresh_items(self, model_id: int) -> list[feedback.FeedbackItem]:
        """The model's labelled items not used yet; decrypted only once enough are anchored."""
        used = self.state.used.get(model_id, set())
        anchored = feedback.anchors(self.stack.chain, model_id)
        if (
            sum(1 for cid, _s, gone in anchored if not gone and cid not in used)
            < self.retrain_after
        ):
            return []
        stack = self.stack
        items = feedback.read_feedback(stack.chain, stack.store, stack.signer, model_id)
        return trainable([i for i in items if i.cid not in used])

    def poll(self) -> list[RetrainOutcome]:
        outcomes = []
        for model_id in self.owned_models():
            items = self.fresh_items(model_id)
            cids = frozenset(i.cid for i in items)
            if len(items) < self.retrain_after or self._failed.get(model_id) == cids:
                continue
            log.info("model %d: %d new feedback items; retraining", model_id, len(items))
            try:
                outcome = retrain_listing(
                    self.stack,
                    model_id,
                    items=items,
                    before_publish=lambda used, m=model_id: self.state.mark_used(m, used),
                    **self.options,
                )
            except ModexError as exc:  # retried once other items come in, or after a restart
                self._failed[model_id] = cids
                log.warning("model %d: retraining failed: %s", model_id, exc)
                continue
            self.state.mark_used(model_id, outcome.used)  # a refused run used its items too
            log.info("%s", outcome.summary())
            outcomes.append(outcome)
        return outcomes

    def run(self, stop: threading.Event, interval: float) -> None:
        """Poll until ``stop`` is set; an unexpected error is logged and the loop goes on."""
        while not stop.is_set():
            try:
                self.poll()
            except Exception:
                log.exception("the retraining job's pass failed; trying again")
            stop.wait(interval)
