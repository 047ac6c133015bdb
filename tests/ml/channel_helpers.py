"""A payment channel on anvil for the tests of paid calls (tests/ml/test_vouchers_anvil.py; the
two-server test may share it): the suite deployed, a listing with a price per call, a buyer's
channel on it, and a config.toml for `modex serve --config` and `modex call --config`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eth_account import Account

from node.chain import Chain, connect
from node.config import Config
from node.deploy import deploy_suite, write_deployment
from tests.ml.conftest import send_tx

ETH = "0x" + "00" * 20
DAY = 86400


@dataclass
class PaidChannel:
    chain: Chain
    seller: object  # eth-account LocalAccounts, funded with 1 ETH each
    buyer: object
    model_id: int
    channel_id: int
    config: Path


def channel_deployment(
    anvil_url: str,
    folder: Path,
    *,
    price: int,
    deposit: int,
    cid: str = "bafkreitestmodexchannel",
    days: int = 7,
    **params,
) -> PaidChannel:
    """The suite on anvil (deploy ``params``: fee_bps...), a listing by a new seller at ``price``
    per call, a new buyer's channel with ``deposit`` wei for ``days`` days, folder/config.toml."""
    w3 = connect(anvil_url)
    record = deploy_suite(w3, w3.eth.accounts[0], **params)
    deployment = write_deployment(record, folder / "deployments")
    chain = Chain.from_config(Config(data_dir=folder, chain=anvil_url, deployment_file=deployment))
    channels = chain.contract("Channels")
    seller, buyer = Account.create(), Account.create()
    for who in (seller, buyer):
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": who.address, "value": 10**18})
    listing = chain.registry.functions.list(b"\x11" * 32, cid, 10**15)
    model_id = listing.call({"from": seller.address})
    send_tx(w3, seller, listing)
    send_tx(w3, seller, channels.functions.setCallPrice(model_id, price))
    expires = w3.eth.get_block("latest")["timestamp"] + days * DAY
    opening = channels.functions.openChannel(model_id, ETH, deposit, expires)
    channel_id = opening.call({"from": buyer.address, "value": deposit})
    send_tx(w3, buyer, opening, value=deposit)
    config = folder / "config.toml"
    config.write_text(
        f'chain = "{anvil_url}"\ndata_dir = "{folder}"\ndeployment_file = "{deployment}"\n'
    )
    return PaidChannel(chain, seller, buyer, model_id, channel_id, config)
