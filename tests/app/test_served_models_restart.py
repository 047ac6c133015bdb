"""The models `modex up` serves for paid inference outlive a restart on its local chain (they
used to live in the process only: after a restart a model published from the UI was "not
served"), and start empty with the embedded chain, which is new at every start."""

from __future__ import annotations

import pytest

from modex.exchange import Exchange
from node.config import load_config
from node.served_dirs import ServedModelDirs
from tests.app.conftest import VAULT_PASSWORD


def start(data, chain: str) -> Exchange:
    config = load_config(None, env={}, data_dir=data, chain=chain, ipfs="embedded", gateway_port=0)
    return Exchange.start(config, password=VAULT_PASSWORD, start_threads=False)


@pytest.mark.anvil
def test_served_models_survive_a_restart_of_the_local_chain(tmp_path):
    data = tmp_path / "node"
    exchange = start(data, "local")
    try:
        chain_id = exchange.chain.chain_id
        path = exchange.config.served_models_path(chain_id)
        assert isinstance(exchange.models, ServedModelDirs) and exchange.models.path == path
        assert path.parent == data / "chain"  # tied to the chain, reset with it
        exchange.models[7] = tmp_path / "published-from-the-ui"
    finally:
        exchange.stop()

    again = start(data, "local")
    try:
        assert dict(again.models) == {7: tmp_path / "published-from-the-ui"}
    finally:
        again.stop()


def test_the_embedded_chain_starts_with_no_served_model(tmp_path):
    data = tmp_path / "node"
    exchange = start(data, "embedded")
    try:
        exchange.models[7] = tmp_path / "model"
        assert exchange.models.path.parent == data / "embedded"
    finally:
        exchange.stop()
    again = start(data, "embedded")
    try:
        assert dict(again.models) == {}
    finally:
        again.stop()
