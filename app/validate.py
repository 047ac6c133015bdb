"""Validate: stake and name an attester (the hot key the node's validator agent runs with; from a
server-held wallet, or from a browser wallet through /api/tx/prepare: ``prepare_stake``,
``prepare_set_attester``), the listings awaiting this validator (each with its round's deadlines, this
validator's seat, the seller's claimed work digest and the one it revealed), a per-row Validate
that carries that one model forward through node.validator (a background job), and this
validator's attestations.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from app import session_keys
from app.errors import flash_error, format_eth
from app.helpers import InputError, parse_eth, require_signer
from app.jobs import get_jobs
from app.lookups import model_or_404
from app.resources import data_dir, get_chain, get_indexer, get_store
from ml.evaluate import evaluate_listing
from node import market, versions
from node.errors import ChainError, ModexError, StoreError
from node.protocol import FAILED_WORK_DIGEST, ZERO32, ModelStatus, Round, Seat, SeatState, StakeInfo
from node.validator import (
    NO_ATTESTER_ADDRESS,
    ValidatorAgent,
    attester_address,
    set_attester,
    state_path,
)

log = logging.getLogger(__name__)
bp = Blueprint("validate", __name__, url_prefix="/validate")

QUEUE_SIZE = 50
# A Validate job waits for a round's deadline when it comes within this many seconds; a later one
# (a public chain's day-long periods) ends the job, saying when to press Validate again.
JOB_WAIT_LIMIT_S = 120


@dataclass
class Row:
    """One model as this validator sees it."""

    model_id: int
    name: str
    status: str  # ModelStatus word
    round: Round
    seat: Seat
    claimed: bytes  # the seller's claimed work digest (zero: none)
    revealed: bytes | None  # the work digest this validator revealed last (None: not yet)
    matches: bool | None  # whether its revealed hash was the listed one
    new_version: int | None = None  # a later version awaiting its cycle (Validators.opensNewCycle)

    @property
    def seat_word(self) -> str:
        return self.seat.state.name.lower()

    @property
    def verdict(self) -> str:
        """The claimed digest against the revealed one, in words."""
        if self.revealed is None:
            return "not revealed yet"
        if self.revealed == FAILED_WORK_DIGEST:
            return "evaluation failed (failure digest)"
        if self.claimed == ZERO32:
            return "revealed; the seller claimed nothing"
        return (
            "✔ reproduced the claim"
            if self.revealed == self.claimed
            else "✘ differs from the claim"
        )


@bp.route("/")
def index():
    address = session_keys.current_address()
    queue, history, stake, attester = [], [], StakeInfo(0, 0, 0, 0), None
    chain = get_chain()
    min_stake = market.min_stake(chain)
    if address:
        stake = StakeInfo.from_call(chain.call(chain.validators.functions.stakeOf(address)))
        named = chain.call(chain.validators.functions.attesterOf(address))
        attester = None if named == NO_ATTESTER_ADDRESS else named
        history = attestations_by(chain, address)
        queue = rows_for(chain, address, history)
    return render_template(
        "validate.html",
        address=address,
        queue=queue,
        history=history,
        stake=stake,
        attester=attester,
        min_stake=min_stake,
        wait_limit=JOB_WAIT_LIMIT_S,
        zero32=ZERO32,
    )


def attestations_by(chain, address: str) -> list[dict]:
    """This validator's revealed attestations, newest first, from the Attested events."""
    start = int(chain.deployment.get("block", 0) or 0)
    events = chain.events("Attested", from_block=start, validator=address)
    return [
        {
            "model_id": int(e["args"]["modelId"]),
            "matches": bool(e["args"]["matches"]),
            "work_digest": "0x" + bytes(e["args"]["workDigest"]).hex(),
            "block": e["blockNumber"],
        }
        for e in reversed(events)
    ]


def rows_for(chain, address: str, history: list[dict]) -> list[Row]:
    """The models awaiting validation (newest first): unverified ones, Verified ones whose owner
    published a later version since (a key request opens its cycle), and those where this
    validator holds an open seat; with their round, the seat and the digests."""
    indexer = get_indexer()
    rows, _ = indexer.list_models(status="unverified", sort="newest", page=1, per_page=QUEUE_SIZE)
    names = {r["model_id"]: r["name"] for r in rows}
    for model_id in indexer.awaiting_new_cycle(QUEUE_SIZE):
        names[model_id] = (indexer.get_model(model_id) or {}).get("name") or ""
    for a in history:  # a seat still open on a model that settled meanwhile stays listed
        names.setdefault(a["model_id"], "")
    latest = {}
    for a in reversed(history):
        latest[a["model_id"]] = a
    v, reg = chain.validators.functions, chain.registry.functions
    out = []
    for model_id, name in names.items():
        seat = Seat.from_call(chain.call(v.attestationOf(model_id, address)))
        status = ModelStatus(chain.call(v.status(model_id)))
        new_version = (
            versions.version_count(chain, model_id)
            if status == ModelStatus.VERIFIED and chain.call(v.opensNewCycle(model_id))
            else None
        )
        if (
            new_version is None
            and status != ModelStatus.UNVERIFIED
            and seat.state in (SeatState.NONE, SeatState.RELEASED)
        ):
            continue  # nothing left for this validator to do
        mine = latest.get(model_id)
        out.append(
            Row(
                model_id,
                name or f"Model #{model_id}",
                status.word,
                Round.from_call(chain.call(v.roundOf(model_id))),
                seat,
                bytes(chain.call(reg.claimedWorkDigest(model_id))),
                bytes.fromhex(mine["work_digest"][2:]) if mine else None,
                mine["matches"] if mine else None,
                new_version,
            )
        )
    return out


def _stake_amount(text) -> int:
    amount = parse_eth(str(text or ""), "stake")
    if amount <= 0:
        raise InputError("Stake more than 0 ETH.")
    return amount


@bp.route("/stake", methods=["POST"])
def stake():
    signer = require_signer()
    try:
        amount = _stake_amount(request.form.get("amount"))
        market.stake(get_chain(), signer, amount)
    except ModexError as exc:
        flash_error(exc)
    else:
        flash(f"Staked {format_eth(amount)}; you can now validate listings.", "ok")
    return redirect(url_for(".index"))


@bp.route("/attester", methods=["POST"])
def attester():
    """Name the hot key that attests for this wallet ("none": attest with this wallet again)."""
    signer = require_signer()
    text = request.form.get("attester", "")
    try:
        set_attester(get_chain(), signer, text)
    except ModexError as exc:
        flash_error(exc)
    else:
        flash(_attester_said(attester_address(text)), "ok")
    return redirect(url_for(".index"))


def _attester_said(attester: str) -> str:
    if attester == NO_ATTESTER_ADDRESS:
        return "This wallet attests with its own key again."
    return (
        f"{attester} now attests for this wallet: run the validator agent with that key "
        "(the stake and rewards stay here)."
    )


# /api/tx/prepare actions (app/api.py's table) for a browser wallet: it signs, the page follows.


def prepare_stake(chain, address, data, model_id, score):
    """stake(): ``amount`` ETH from the browser wallet."""
    return chain.validators.functions.stake(), _stake_amount(data.get("amount")), {}


def prepare_set_attester(chain, address, data, model_id, score):
    """setAttester(``attester``): the hot key the node's validator agent runs with ("none": the
    wallet attests itself again)."""
    named = attester_address(str(data.get("attester") or ""))
    return chain.validators.functions.setAttester(named), 0, {}


@bp.route("/<int:model_id>", methods=["POST"])
def run(model_id: int):
    signer = require_signer()
    model_or_404(model_id)
    job = get_jobs().submit(
        "validate",
        session_keys.session_id(),
        _validate_job,
        get_chain(),
        get_store(),
        signer,
        model_id,
        data_dir(),
        current_app.config.get("MODEX_EVALUATOR") or evaluate_listing,
    )
    return redirect(url_for("api.job_page", job_id=job.id, next=url_for(".index")))


def _validate_job(
    chain,
    store,
    signer,
    model_id,
    node_dir,
    evaluator,
    *,
    progress,
    timeout: float = 600.0,
    interval: float = 1.0,
    wait_limit: float = JOB_WAIT_LIMIT_S,
):
    """Carry this one model forward — key, evaluation, commit, reveal, settlement, release —
    waiting for each deadline that comes within ``wait_limit`` seconds; ends when the model is
    settled and the seat released, or when the next deadline is further away (the result says
    when to press Validate again)."""
    # Built here, not by ValidatorAgent.from_config: this job follows the head (0 confirmations)
    # whatever the node's setting, because it waits for the events of its own transactions
    # within one job, and a chain that mines only on a transaction (anvil) would mine no block
    # after them to confirm them.
    agent = ValidatorAgent(
        chain,
        signer,
        store,
        state_path(node_dir, chain.chain_id, signer.address),
        work_dir=node_dir / "validate",
        evaluator=evaluator,
    )
    deadline = time.monotonic() + timeout
    progress("staking if needed")
    found = None
    while True:
        report = agent.poll([model_id])
        found = next((a for a in report.committed if a.model_id == model_id), found)
        done = model_id in report.done
        wait = report.waiting.get(model_id)
        if done:
            status = ModelStatus(chain.call(chain.validators.functions.status(model_id)))
            return {
                "model_id": model_id,
                "status": status.word,
                "url": f"/models/{model_id}",
                **_finding(found),
            }
        line = report.about(model_id, agent.now())
        progress(
            f"{'not checked yet, nothing committed: ' if model_id in report.retry else ''}{line}"
        )
        if wait is not None and wait.until is not None and wait.until - agent.now() > wait_limit:
            return {
                "model_id": model_id,
                "status": "unverified",
                "waiting": line,
                "url": "/validate/",
                **_finding(found),
            }
        if time.monotonic() > deadline:
            not_checked = report.retry.get(model_id)  # this node's store or disk, never committed
            if not_checked:
                raise StoreError(
                    f"model {model_id} could not be checked within {timeout:g} s "
                    f"and nothing was committed: {not_checked}"
                )
            raise ChainError(
                f"model {model_id} is not settled after {timeout:g} s ({line}); "
                "press Validate again to go on"
            )
        time.sleep(interval)


def _finding(found) -> dict:
    if found is None:
        return {}
    return {
        "matches": found.matches,
        "work_digest": "0x" + found.work_digest.hex(),
        "reason": found.reason,
    }
