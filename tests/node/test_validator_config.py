"""``ValidatorAgent.from_config``: the agent a Config describes (``modex validate``, the UI)."""

from __future__ import annotations

import json

from modex_stack import make_stack
from validator_helpers import evaluator_of, toy_report

from node.validator import ValidatorAgent, state_path

ETH = 10**18


def test_from_config_wires_the_state_file_work_folder_confirmations_and_stake(tmp_path):
    stack = make_stack("embedded", tmp_path / "stack")
    config = stack.config("validator").replace(confirmations=2)
    chain, signer, store = stack.chain, stack.signers["validator"], stack.store("validator")
    evaluate = evaluator_of(toy_report())
    agent = ValidatorAgent.from_config(
        config, chain, signer, store, evaluator=evaluate, stake_amount=ETH
    )
    report = agent.poll()
    assert report.staked == ETH
    state = state_path(config.data_dir, chain.chain_id, signer.address)
    assert agent.state_path == state and agent.work_dir == config.data_dir / "validate"
    assert agent.evaluator is evaluate and agent.store is store
    head = chain.block_number()
    assert json.loads(state.read_text())["next_block"] == head - 2 + 1  # two blocks behind

    node_dir = tmp_path / "node"  # the UI's folder for its validation jobs
    ui = ValidatorAgent.from_config(
        config, chain, signer, store, evaluator=evaluate, data_dir=node_dir
    )
    assert ui.state_path == state_path(node_dir, chain.chain_id, signer.address)
    assert ui.work_dir == node_dir / "validate"
    mine = tmp_path / "mine.json"  # the CLI's --state
    assert (
        ValidatorAgent.from_config(
            config, chain, signer, store, evaluator=evaluate, state=mine
        ).state_path
        == mine
    )
