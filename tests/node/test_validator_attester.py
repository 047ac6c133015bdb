"""The validator agent with a hot key (issue 16 §2): the validator's wallet stakes and names an
attester (Validators.setAttester); an agent holding only the attester's key, told the validator's
address, asks for the key, re-hashes, re-evaluates, commits and reveals for it, and the model turns
Verified; the validator's share of the sales fees, here of an mUSD listing, is claimed to the
validator's balance (issue 14: rewards in the listing's ERC-20 token)."""

from __future__ import annotations

import pytest
from modex_stack import past, time_travel
from token_helpers import mint, stablecoin_stack
from validator_helpers import claimed_model, evaluator_of, seat, status, toy_report
from worker_helpers import deliver_keys

from node import market
from node.errors import ConfigError
from node.protocol import ModelStatus, SeatState
from node.publish import ListingInfo, publish
from node.tokens import stablecoin
from node.validator import ValidatorAgent, set_attester, state_path

PERIOD = 5  # commit and reveal periods (seconds of chain time)
CHALLENGE = 60
HONEST = toy_report(outputs=(0, 1, 1, 0), accuracy=0.5)
USD = 5 * 10**6  # 5 mUSD (6 decimals)


@pytest.fixture
def stack(tmp_path):
    return stablecoin_stack(
        tmp_path / "stack",
        delivery_window=3600,
        commit_period=PERIOD,
        reveal_period=PERIOD,
        challenge_period=CHALLENGE,
    )


def hot_agent(stack, validator: str) -> ValidatorAgent:
    """The agent with the attester's key only ("buyer2" never staked), working for ``validator``
    (its state file is the validator's, in buyer2's data dir)."""
    hot = "buyer2"
    return ValidatorAgent.from_config(
        stack.config(hot),
        stack.chain,
        stack.signers[hot],
        stack.store(hot),
        evaluator=evaluator_of(HONEST),
        validator=validator,
    )


def run_to_the_end(stack, agent, model_id: int) -> list:
    """Poll the agent, the seller's worker answering key requests and the clock moved past each
    deadline it waits for, until it is done with the model; every pass's report."""
    reports = []
    for _ in range(8):
        report = agent.poll()
        reports.append(report)
        if model_id in report.done:
            return reports
        deliver_keys(stack, stack.root / "worker.json")
        wait = report.waiting.get(model_id)
        if wait is not None and wait.until:
            past(stack, wait.until)
    raise AssertionError(f"model {model_id} not done after 8 passes: {reports}")


def test_an_agent_with_only_the_attester_key_verifies_and_claims_token_rewards(stack, tmp_path):
    chain, cold, hot = stack.chain, stack.signers["validator"], stack.signers["buyer2"]
    usd = stablecoin(chain)
    model_id = publish(
        chain,
        stack.signers["seller"],
        stack.store(),
        stack.vault(),
        claimed_model(tmp_path / "model", HONEST),
        ListingInfo(name="in mUSD"),
        price_wei=USD,
        token=usd,
    ).model_id
    market.stake(chain, cold)
    set_attester(chain, cold, hot.address)
    cold_nonce = chain.w3.eth.get_transaction_count(cold.address)

    agent = hot_agent(stack, cold.address)
    reports = run_to_the_end(stack, agent, model_id)
    assert [model_id] in [r.requested for r in reports]
    assert [a.model_id for r in reports for a in r.committed] == [model_id]
    assert [a.model_id for r in reports for a in r.revealed] == [model_id]
    assert status(stack, model_id) == ModelStatus.VERIFIED
    assert seat(stack, model_id, "validator").state == SeatState.RELEASED
    assert seat(stack, model_id, "buyer2").state == SeatState.NONE
    v = chain.validators.functions
    assert chain.call(v.verifierWeight(model_id, cold.address)) == 1
    assert chain.w3.eth.get_transaction_count(cold.address) == cold_nonce  # never the cold key
    assert state_path(stack.config("buyer2").data_dir, chain.chain_id, cold.address).is_file()

    # A sale in mUSD, released: the agent claims the validator's share in mUSD, to the validator.
    mint(stack, "buyer", 10 * USD)
    purchase = market.buy(chain, stack.signers["buyer"], model_id)
    assert deliver_keys(stack, stack.root / "worker.json") == [purchase.purchase_id]
    time_travel(chain, CHALLENGE + 1)
    m = chain.marketplace.functions
    chain.transact(m.releaseRevenue(purchase.purchase_id), stack.signers["seller"])
    pending = chain.call(m.pendingValidatorReward(model_id, cold.address, usd.address))
    assert pending > 0
    report = agent.poll()
    assert report.rewards == [(model_id, usd, pending)]
    assert chain.call(m.credited(cold.address, usd.address)) == pending
    assert chain.call(m.credited(hot.address, usd.address)) == 0
    assert agent.poll().rewards == []  # nothing more pending: nothing sent
    assert chain.w3.eth.get_transaction_count(cold.address) == cold_nonce


def test_an_agent_whose_key_the_validator_did_not_name_says_what_to_run(stack, tmp_path):
    cold = stack.signers["validator"]
    market.stake(stack.chain, cold)
    with pytest.raises(ConfigError, match="set-attester"):
        hot_agent(stack, cold.address).poll()


def test_the_validator_wallet_names_its_attester_and_the_agent_runs_with_it_from_the_cli(stack):
    cold, hot = stack.signers["validator"].address, stack.signers["buyer2"].address
    code, _, err = stack.cli("validator", "validator", "set-attester", hot)
    assert code == 1 and "has no stake" in err  # the contract's sentence: stake first
    code, out, _ = stack.cli("validator", "validator", "stake")
    assert code == 0 and "staked 0.1 ETH" in out
    code, _, err = stack.cli("validator", "validator", "set-attester", "0x12")
    assert code == 1 and "is not an attester address" in err
    code, out, _ = stack.cli("validator", "validator", "set-attester", hot)
    assert code == 0 and f"{hot} now attests for {cold}" in out
    assert f"attester: {hot}" in stack.cli("validator", "validator", "show")[1]
    # The agent with the hot key and --validator: one pass (nothing listed yet), never staking.
    code, _, err = stack.cli("buyer2", "validate", "--once", "--validator", cold)
    assert code == 0, err
    code, _, err = stack.cli("buyer2", "validate", "--once", "--validator", cold, "--stake", "1")
    assert code == 1 and "--stake is the validator's own" in err
    code, out, _ = stack.cli("validator", "validator", "set-attester", "none")
    assert code == 0 and "attests with its own key again" in out
    code, _, err = stack.cli("buyer2", "validate", "--once", "--validator", cold)
    assert code == 1 and "has not named" in err
