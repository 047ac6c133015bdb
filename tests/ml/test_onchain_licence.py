"""The endpoint's licence check against the real Marketplace on the embedded chain."""

import pytest

from ml import signing
from ml.endpoint import InferenceService, create_app, onchain_has_license
from tests.ml.conftest import deliver_key, list_and_buy


class Echo:
    labels = ("negative", "neutral", "positive")

    def predict(self, texts):
        return [{"label": "neutral", "score": 1.0, "truncated": False} for _ in texts]


@pytest.fixture(scope="module")
def market():
    from node.chain import Chain, embedded_web3
    from node.deploy import deploy_suite

    w3 = embedded_web3()
    chain = Chain(w3, deploy_suite(w3, w3.eth.accounts[0]))
    seller, buyer, model_id, purchase_id = list_and_buy(w3, chain)
    return chain, w3, seller, buyer, model_id, purchase_id


def test_licence_comes_from_the_marketplace_after_delivery(market):
    chain, w3, seller, buyer, model_id, purchase_id = market
    service = InferenceService(
        {model_id: Echo()},
        has_license=onchain_has_license(chain),
        chain_id=chain.chain_id,
        verifying_contract=chain.marketplace.address,
        negative_ttl=0,
    )
    client = create_app(service).test_client()

    def ask(who=buyer):
        return client.post(
            "/v1/infer",
            json=signing.sign_request(
                who,
                model_id=model_id,
                inputs=["hello"],
                chain_id=chain.chain_id,
                verifying_contract=chain.marketplace.address,
            ),
        )

    assert ask().status_code == 403  # paid, key not delivered yet: no licence
    deliver_key(w3, chain, seller, purchase_id, buyer)
    r = ask()
    assert r.status_code == 200 and r.json["signer"] == buyer.address
    assert ask(seller).status_code == 403  # owner bought nothing
