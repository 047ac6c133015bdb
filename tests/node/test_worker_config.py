"""``KeyDelivery.from_config``: the worker a Config describes (the one wiring ``modex worker``
and ``modex up`` share), and ``Config.worker_state_path``, the one home of its state file."""

from __future__ import annotations

import json

from modex_stack import make_stack

from node.replacement import GWEI
from node.worker import KeyDelivery


def test_the_worker_state_file_lies_beside_the_index_named_for_the_chain(tmp_path):
    config = make_stack("embedded", tmp_path / "stack").config("seller")
    assert config.worker_state_path(31337) == config.data_dir / "worker-31337.json"
    moved = config.replace(index_db=tmp_path / "run" / "index.sqlite3")
    assert moved.worker_state_path(5) == tmp_path / "run" / "worker-5.json"


def test_from_config_wires_the_state_file_confirmations_fees_store_and_crash_hook(tmp_path):
    stack = make_stack("embedded", tmp_path / "stack")
    config = stack.config("seller").replace(
        confirmations=2, worker_replace_after=7.0, worker_max_fee_gwei=1.5
    )
    seller, store, chain_id = stack.signers["seller"], stack.store(), stack.chain.chain_id

    def crash(point: str, purchase_id: int) -> None:
        raise AssertionError("never called: there is nothing to deliver")

    worker = KeyDelivery.from_config(
        config, stack.chain, seller, stack.vault(), store=store, crash=crash
    )
    report = worker.poll()
    head = stack.chain.block_number()
    assert report.scanned_to == head - 2  # two confirmations behind the head
    state = config.data_dir / f"worker-{chain_id}.json"
    assert worker.state.path == state == config.worker_state_path(chain_id)
    assert json.loads(state.read_text())["next_block"] == head - 1
    assert worker.inflight.replace_after_s == 7.0
    assert worker.inflight.max_fee_per_gas == int(1.5 * GWEI)
    assert worker.delivery.store is store and worker.delivery.crash is crash

    mine = tmp_path / "mine.json"  # the CLI's --state
    KeyDelivery.from_config(config, stack.chain, seller, stack.vault(), state=mine).poll()
    assert json.loads(mine.read_text())["next_block"] == head - 1
