"""One wiring (issue 12 item 2): node/stack.py's Stack builds the node's parts for every entry point,
so `modex up` and the `modex` commands cannot drift apart again, as their two key-delivery workers
once did: `modex up`'s kept its state in worker-state.json, `modex worker`'s in
worker-<chainId>.json, so the same worker started both ways kept two checkpoints of one chain."""

from __future__ import annotations

import ast

from modex.cli import main
from node import paths
from node.stack import Stack
from tests.app.conftest import VAULT_PASSWORD

SOURCES = ("node", "app", "ml", "modex", "tests", "benchmarks", "scripts")


def test_there_is_one_stack_class_and_it_is_node_stack():
    defined = [
        f"{path.relative_to(paths.ROOT)}:{node.lineno}"
        for top in SOURCES
        for path in sorted((paths.ROOT / top).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ClassDef) and node.name == "Stack"
    ]
    assert len(defined) == 1 and defined[0].startswith("node/stack.py:"), defined


def test_modex_up_and_modex_worker_get_their_parts_and_worker_state_file_from_one_stack(
    own_exchange, tmp_path, monkeypatch
):
    exchange = own_exchange
    run = exchange.config
    assert isinstance(exchange.stack, Stack)
    assert exchange.chain is exchange.stack.chain and exchange.store is exchange.stack.store
    state = run.worker_state_path(exchange.chain.chain_id)
    assert not state.exists()

    # `modex worker --once` with the operator's key over the exchange's configuration: the same
    # worker as `modex up`'s, run from the command line.
    config_file = tmp_path / "node.toml"
    config_file.write_text(f'index_db = "{run.index_db}"\nkeyvault = "{run.keyvault}"\n')
    monkeypatch.setenv("MODEX_PASSWORD", VAULT_PASSWORD)
    monkeypatch.delenv("MODEX_VAULT_PASSWORD", raising=False)
    argv = ["worker", "--once", "--config", str(config_file), "--chain", "embedded"]
    argv += ["--data-dir", str(run.data_dir), "--deployment", str(run.deployment_file)]
    argv += ["--keystore", str(run.data_dir / "operator-keystore.json")]
    assert main(argv) == 0
    assert state.is_file()  # where the command kept its checkpoint...
    worker = exchange.key_delivery()
    assert worker.state.path == state  # ...is where `modex up`'s worker reads it
    assert worker.signer.address == exchange.operator.address
