"""The validator agent across validation cycles (contracts/Validators.sol: one cycle per version
validated): a model it verified comes back when its owner publishes a later version, and it
validates that version too; a seat left in an older cycle, when another validator opened the new
one first, is released with ``releaseAt`` (also by an agent restarted on a state file written
before cycles); and the validator's share of the fees is claimed for every version it verified.
"""

from __future__ import annotations

import json

import pytest
from modex_stack import past, time_travel
from validator_helpers import (
    agent_for,
    claimed_model,
    finish_round,
    publish_claimed,
    rounds_stack,
    toy_report,
)
from worker_helpers import deliver_keys

from node import market
from node.indexer import Indexer
from node.protocol import ModelStatus, Seat, SeatState
from node.publish import ListingInfo, publish_version

PERIOD = 5  # commit and reveal periods (seconds of chain time)
CHALLENGE = 60
HONEST = toy_report(outputs=(0, 1, 1, 0), accuracy=0.5)


@pytest.fixture
def stack(tmp_path):
    return rounds_stack(tmp_path, PERIOD, challenge_period=CHALLENGE)


def publish_v1(stack, tmp_path) -> int:
    return publish_claimed(stack, tmp_path / "v1", HONEST)


def publish_v2(stack, tmp_path, model_id: int) -> None:
    published = publish_version(
        stack.chain,
        stack.signers["seller"],
        stack.store(),
        stack.vault(),
        model_id,
        claimed_model(tmp_path / "v2", HONEST, seed=1),
        ListingInfo(name="cycles v2"),
    )
    assert published.version == 2


def carry(stack, agents, model_id: int) -> list:
    """``finish_round`` with the seller's worker delivering the keys asked for between passes."""
    agents = agents if isinstance(agents, list) else [agents]
    reports = []
    for agent in agents:
        reports.append(agent.poll([model_id]))
    deliver_keys(stack, stack.root / "worker.json")
    return reports + finish_round(stack, agents, model_id)


def seat_at(stack, model_id: int, version: int, role: str) -> Seat:
    v = stack.chain.validators.functions
    return Seat.from_call(
        stack.chain.call(v.attestationAt(model_id, version, stack.signers[role].address))
    )


def status_at(stack, model_id: int, version: int) -> ModelStatus:
    return ModelStatus(
        stack.chain.call(stack.chain.validators.functions.statusAt(model_id, version))
    )


def sell(stack, model_id: int, buyer: str) -> None:
    """A sale to ``buyer``, delivered and its revenue released: the fees go to the verifiers of
    the version of the latest verdict."""
    purchase = market.buy(stack.chain, stack.signers[buyer], model_id)
    assert purchase.purchase_id in deliver_keys(stack, stack.root / "worker.json")
    time_travel(stack.chain, CHALLENGE + 1)
    stack.chain.transact(
        stack.chain.marketplace.functions.releaseRevenue(purchase.purchase_id),
        stack.signers["seller"],
    )


def pending_at(stack, model_id: int, version: int, role: str) -> int:
    m = stack.chain.marketplace.functions
    return int(
        stack.chain.call(
            m.pendingValidatorRewardAt(
                model_id, version, stack.signers[role].address, "0x" + "00" * 20
            )
        )
    )


def test_a_verified_model_is_validated_again_for_its_new_version_and_both_rewards_claimed(
    stack, tmp_path
):
    model_id = publish_v1(stack, tmp_path)
    agent = agent_for(stack, tmp_path, "validator")
    carry(stack, agent, model_id)
    assert status_at(stack, model_id, 1) == ModelStatus.VERIFIED
    assert model_id not in agent.todo and model_id in agent.state.rewarding
    sell(stack, model_id, "buyer")  # shared with version 1's verifiers
    v1_reward = pending_at(stack, model_id, 1, "validator")
    assert v1_reward > 0

    publish_v2(stack, tmp_path, model_id)
    report = agent.poll()  # VersionPublished brings the model back; its key opens v2's cycle
    assert report.requested == [model_id] and report.name(model_id) == f"model {model_id} version 2"
    v = stack.chain.validators.functions
    assert stack.chain.call(v.attestedVersion(model_id)) == 2
    assert agent.state.seat_versions[model_id] == 2
    assert report.rewards and pending_at(stack, model_id, 1, "validator") == 0  # v1's claimed
    deliver_keys(stack, stack.root / "worker.json")
    finish_round(stack, agent, model_id)
    assert status_at(stack, model_id, 2) == ModelStatus.VERIFIED
    assert status_at(stack, model_id, 1) == ModelStatus.VERIFIED  # v1's verdict stands
    assert seat_at(stack, model_id, 2, "validator").state == SeatState.RELEASED
    assert model_id not in agent.todo

    sell(stack, model_id, "buyer2")  # now shared with version 2's verifiers
    v2_reward = pending_at(stack, model_id, 2, "validator")
    assert v2_reward > 0
    claimed = agent.poll().rewards
    assert [(m, amount) for m, _token, amount in claimed] == [(model_id, v2_reward)]
    credited = stack.chain.call(
        stack.chain.marketplace.functions.credited(
            stack.signers["validator"].address, "0x" + "00" * 20
        )
    )
    assert credited == v1_reward + v2_reward

    # The index keeps each version's status, and the rounds of the current cycle (version 2's).
    index = Indexer(stack.chain, tmp_path / "index.sqlite")
    index.sync()
    assert [(r["version"], r["status"], r["attested"]) for r in index.versions_of(model_id)] == [
        (1, "verified", False),
        (2, "verified", True),
    ]
    assert [(r["version"], r["round"]) for r in index.rounds_of(model_id)] == [(2, 1)]
    assert [a["version"] for a in index.attestations_of(model_id)] == [2]
    before = index.dump()
    index.rebuild()
    assert index.dump() == before


def test_a_seat_left_in_the_old_cycle_is_released_by_an_agent_restarted_on_an_old_state_file(
    stack, tmp_path
):
    model_id = publish_v1(stack, tmp_path)
    first, second = agent_for(stack, tmp_path, "validator"), agent_for(stack, tmp_path, "buyer2")
    for agent in (first, second):
        agent.poll([model_id])
    deliver_keys(stack, stack.root / "worker.json")
    # Both commit and reveal; then only the first settles and releases (the second is away).
    for agent in (first, second):
        agent.poll([model_id])
    rnd = stack.chain.call(stack.chain.validators.functions.roundOf(model_id))
    past(stack, rnd[1])
    for agent in (first, second):
        assert [a.model_id for a in agent.poll([model_id]).revealed] == [model_id]
    finish_round(stack, first, model_id)
    assert status_at(stack, model_id, 1) == ModelStatus.VERIFIED
    assert seat_at(stack, model_id, 1, "buyer2").state == SeatState.REVEALED

    publish_v2(stack, tmp_path, model_id)
    assert first.poll().requested == [model_id]  # the first opens version 2's cycle

    # The second's state file as an agent before cycles wrote it: no seat versions.
    path = tmp_path / "buyer2-state.json"
    doc = json.loads(path.read_text())
    assert doc["seat_versions"] == {str(model_id): 1}
    del doc["seat_versions"]
    path.write_text(json.dumps({**doc, "version": 4}))
    restarted = agent_for(stack, tmp_path, "buyer2")
    assert restarted.state.seat_versions == {model_id: 1}

    report = restarted.poll()
    assert seat_at(stack, model_id, 1, "buyer2").state == SeatState.RELEASED  # releaseAt
    returned, forfeited = report.released[model_id]
    assert returned > 0 and forfeited == 0
    assert report.requested == [model_id]  # then it joins version 2's cycle
    assert restarted.state.seat_versions[model_id] == 2
    assert model_id in restarted.state.rewarding  # it verified version 1
    assert json.loads(path.read_text())["seat_versions"] == {str(model_id): 2}

    deliver_keys(stack, stack.root / "worker.json")
    finish_round(stack, [first, restarted], model_id)
    assert status_at(stack, model_id, 2) == ModelStatus.VERIFIED
    for role in ("validator", "buyer2"):
        assert seat_at(stack, model_id, 2, role).state == SeatState.RELEASED
