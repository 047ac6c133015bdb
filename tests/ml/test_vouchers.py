"""Paid calls through the endpoint (issue 14 §3): vouchers on a payment channel, free trials, and
the words of the 402/403/409 answers. The channel is a stand-in for the chain's (ChannelBook over
a dict); the store is the real SQLite ServiceStore. The same path on anvil through HTTP:
test_vouchers_anvil.py."""

from __future__ import annotations

import pytest
from eth_account import Account

from ml import signing
from ml.endpoint import InferenceService, create_app
from ml.payment import ChannelBook
from ml.serve import DynamicBatcher, QueueFull
from node.channels import ChannelState
from node.servicestore import open_service_store

CHAIN_ID = 31337
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHANNELS = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
TOKEN = "0x" + "00" * 20
BUYER = Account.from_key("0x" + "42" * 32)
OTHER = Account.from_key("0x" + "43" * 32)
LICENSED = Account.from_key("0x" + "44" * 32)
PRICE = 1000
NOW = 1_800_000_000
MODEL = 7


class Chain:
    """The chain as the service reads it: channels by id, the call price, licence holders."""

    def __init__(self):
        self.channels = {
            1: ChannelState(1, MODEL, BUYER.address, TOKEN, 100 * PRICE, 0, NOW + 86400, True),
            2: ChannelState(2, MODEL, OTHER.address, TOKEN, 100 * PRICE, 0, NOW + 86400, True),
            3: ChannelState(3, 8, BUYER.address, TOKEN, 100 * PRICE, 0, NOW + 86400, True),
            4: ChannelState(4, MODEL, BUYER.address, TOKEN, 100 * PRICE, 0, NOW + 86400, False),
            5: ChannelState(5, MODEL, BUYER.address, TOKEN, 100 * PRICE, 0, NOW + 60, True),
            6: ChannelState(6, MODEL, BUYER.address, TOKEN, 2 * PRICE, 0, NOW + 86400, True),
        }
        self.reads = 0

    def read(self, channel_id):
        self.reads += 1
        return self.channels.get(channel_id)

    def has_license(self, model_id, address):
        return address == LICENSED.address


class Flaky:
    """A served model that raises ``failures`` before it answers as ``model`` does."""

    def __init__(self, model, failures):
        self.model, self.failures, self.labels = model, list(failures), model.labels

    def submit(self, texts):
        if self.failures:
            raise self.failures.pop(0)
        return self.model.submit(texts)


class Watching:
    """A served model that records, when it runs, the voucher the store holds for channel 1."""

    def __init__(self, model, store):
        self.model, self.store, self.labels, self.seen = model, store, model.labels, []

    def submit(self, texts):
        self.seen.append(self.store.highest_voucher(1))
        return self.model.submit(texts)


@pytest.fixture(scope="module")
def batcher(predictor):
    with DynamicBatcher(predictor, max_batch_size=8, max_wait_ms=2) as b:
        yield b


@pytest.fixture
def store():
    with open_service_store("sqlite://", clock=lambda: NOW) as s:
        yield s


def make_service(models, store, chain=None, **options):
    chain = chain or Chain()
    return InferenceService(
        models,
        has_license=chain.has_license,
        chain_id=CHAIN_ID,
        verifying_contract=MARKET,
        store=store,
        channels=ChannelBook(chain.read, lambda model_id: PRICE if model_id == MODEL else 0),
        channels_address=CHANNELS,
        clock=lambda: NOW,
        **options,
    )


def client_of(service):
    return create_app(service).test_client()


def call(client, account=BUYER, channel=1, amount=PRICE, voucher_by=None, **request):
    body = signing.sign_request(
        account,
        model_id=request.pop("model_id", MODEL),
        inputs=["I love this phone"],
        chain_id=CHAIN_ID,
        verifying_contract=MARKET,
        now=NOW,
    )
    if channel is not None:
        body = signing.with_voucher(
            body,
            voucher_by or account,
            chain_id=CHAIN_ID,
            channels_address=CHANNELS,
            channel_id=channel,
            cumulative_amount=amount,
        )
    return client.post("/v1/infer", json=body | request)


def refused(response, status, code) -> dict:
    assert response.status_code == status, response.json
    error = response.json["error"]
    assert error["code"] == code and len(error["message"]) > 20
    return error


def test_each_call_pays_one_price_more_and_the_voucher_is_stored(batcher, store):
    client = client_of(make_service({MODEL: batcher}, store))
    for n in range(1, 4):
        r = call(client, amount=n * PRICE)
        assert r.status_code == 200, r.json
        assert r.json["paidWith"] == {
            "kind": "voucher",
            "channelId": 1,
            "cumulativeAmount": str(n * PRICE),
        }
    assert store.highest_voucher(1)[0] == 3 * PRICE
    (entry,) = store.vouchers_to_claim()
    assert entry[:2] == (1, 3 * PRICE) and entry[3] == 0


def test_the_voucher_is_on_disk_before_the_model_runs(batcher, store):
    watching = Watching(batcher, store)
    client = client_of(make_service({MODEL: watching}, store))
    assert call(client, amount=PRICE).status_code == 200
    assert call(client, amount=2 * PRICE).status_code == 200
    assert [seen[0] for seen in watching.seen] == [PRICE, 2 * PRICE]


def test_a_stale_voucher_is_409_with_the_amount_held(batcher, store):
    client = client_of(make_service({MODEL: batcher}, store))
    assert call(client, amount=2 * PRICE).status_code == 200  # a first call may start anywhere
    for amount in (2 * PRICE, 2 * PRICE + PRICE // 2, PRICE):  # served, under one price, lower
        error = refused(call(client, amount=amount), 409, "voucher_stale")
        assert error["acceptedAmount"] == str(2 * PRICE) and error["callPrice"] == str(PRICE)
        assert f"cumulativeAmount {3 * PRICE}" in error["message"]
    assert call(client, amount=3 * PRICE).status_code == 200


def test_a_voucher_over_the_deposit_is_402_until_a_top_up(batcher, store):
    chain = Chain()
    client = client_of(make_service({MODEL: batcher}, store, chain))
    assert call(client, channel=6, amount=2 * PRICE).status_code == 200
    error = refused(call(client, channel=6, amount=3 * PRICE), 402, "insufficient_deposit")
    assert "modex channel top-up 6" in error["message"] and error["deposit"] == str(2 * PRICE)
    chain.channels[6] = ChannelState(
        6, MODEL, BUYER.address, TOKEN, 5 * PRICE, 0, NOW + 86400, True
    )
    assert call(client, channel=6, amount=3 * PRICE).status_code == 200  # read afresh, not cached


@pytest.mark.parametrize(
    "channel, voucher_by, status, code, words",
    [
        (1, OTHER, 401, "bad_voucher", "is not signed by channel 1's buyer"),
        (2, None, 403, "not_your_channel", "was opened by"),
        (3, None, 403, "wrong_channel", "pays for model 8"),
        (4, None, 402, "channel_closed", "modex channel open 7"),
        (5, None, 402, "channel_expiring", "modex channel extend 5"),
        (99, None, 404, "unknown_channel", "there is no channel 99"),
    ],
)
def test_a_voucher_the_channel_does_not_back_is_refused_in_words(
    batcher, store, channel, voucher_by, status, code, words
):
    client = client_of(make_service({MODEL: batcher}, store))
    error = refused(call(client, channel=channel, voucher_by=voucher_by), status, code)
    assert words in error["message"]
    assert store.highest_voucher(channel) is None


def test_a_call_not_served_keeps_the_voucher_and_the_buyer_may_send_it_again(batcher, store):
    flaky = Flaky(batcher, [])
    client = client_of(make_service({MODEL: flaky}, store))
    assert call(client, amount=PRICE).status_code == 200
    flaky.failures = [RuntimeError("CUDA error"), QueueFull("inference queue is full")]
    r = call(client, amount=2 * PRICE)
    assert "not spent, send it again" in refused(r, 500, "inference_failed")["message"]
    assert (
        store.highest_voucher(1)[0] == 2 * PRICE
    )  # kept: the buyer signed it, the seller holds it
    refused(call(client, amount=2 * PRICE), 503, "queue_full")
    r = call(client, amount=2 * PRICE)  # the same amount again: served, not paid twice
    assert r.status_code == 200 and r.json["paidWith"]["cumulativeAmount"] == str(2 * PRICE)
    refused(call(client, amount=2 * PRICE), 409, "voucher_stale")  # served once: not again
    assert call(client, amount=3 * PRICE).status_code == 200


def test_a_replayed_voucher_request_is_refused_and_spends_nothing_more(batcher, store):
    client = client_of(make_service({MODEL: batcher}, store))
    body = signing.with_voucher(
        signing.sign_request(
            BUYER,
            model_id=MODEL,
            inputs=["x"],
            chain_id=CHAIN_ID,
            verifying_contract=MARKET,
            now=NOW,
        ),
        BUYER,
        chain_id=CHAIN_ID,
        channels_address=CHANNELS,
        channel_id=1,
        cumulative_amount=PRICE,
    )
    assert client.post("/v1/infer", json=body).status_code == 200
    refused(client.post("/v1/infer", json=body), 409, "replayed")
    assert store.highest_voucher(1)[0] == PRICE


def test_the_free_trial_serves_n_calls_per_address_then_says_how_to_pay(batcher, store):
    failures = [RuntimeError("boom")]
    service = make_service({MODEL: Flaky(batcher, failures)}, store, free_calls={MODEL: 2})
    client = client_of(service)
    refused(call(client, OTHER, channel=None), 500, "inference_failed")  # not counted
    for _ in range(2):
        r = call(client, OTHER, channel=None)
        assert r.status_code == 200 and r.json["paidWith"] == {"kind": "trial"}
    error = refused(call(client, OTHER, channel=None), 403, "no_licence")
    assert "the 2 free calls of the trial are used" in error["message"]
    r = call(client, BUYER, channel=None)  # per address: another one has its own
    assert r.status_code == 200 and r.json["paidWith"] == {"kind": "trial"}
    r = call(client, LICENSED, channel=None)  # a licence holder never uses the trial
    assert r.status_code == 200 and r.json["paidWith"] == {"kind": "access"}


def test_without_a_way_to_pay_the_403_names_all_three(batcher, store):
    client = client_of(make_service({MODEL: batcher}, store))
    error = refused(call(client, OTHER, channel=None), 403, "no_licence")
    for command in (
        f"modex buy {MODEL}",
        f"modex subscribe {MODEL}",
        f"modex channel open {MODEL}",
        "--channel CHANNEL_ID",
    ):
        assert command in error["message"]


def test_a_model_without_a_call_price_takes_no_voucher(batcher, store):
    chain = Chain()
    chain.channels[3] = ChannelState(3, 8, BUYER.address, TOKEN, 100 * PRICE, 0, NOW + 86400, True)
    client = client_of(make_service({MODEL: batcher, 8: batcher}, store, chain))
    error = refused(call(client, channel=3, model_id=8), 403, "no_call_price")
    assert "modex buy 8" in error["message"]


def test_a_service_without_channels_says_how_to_pay_instead(batcher, store):
    service = InferenceService(
        {MODEL: batcher},
        has_license=Chain().has_license,
        chain_id=CHAIN_ID,
        verifying_contract=MARKET,
        store=store,
        clock=lambda: NOW,
    )
    error = refused(call(client_of(service)), 400, "vouchers_not_accepted")
    assert f"modex buy {MODEL}" in error["message"]


def test_part_of_a_voucher_is_400(batcher, store):
    client = client_of(make_service({MODEL: batcher}, store))
    body = signing.sign_request(
        BUYER, model_id=MODEL, inputs=["x"], chain_id=CHAIN_ID, verifying_contract=MARKET, now=NOW
    )
    assert (
        "voucherSignature missing"
        in refused(
            client.post("/v1/infer", json=body | {"channelId": "1", "cumulativeAmount": "1000"}),
            400,
            "bad_request",
        )["message"]
    )
    bad = body | {"channelId": "1", "cumulativeAmount": "1000", "voucherSignature": "0x12"}
    refused(client.post("/v1/infer", json=bad), 400, "bad_request")


def test_models_lists_the_price_per_call_and_the_free_calls(batcher, store):
    client = client_of(make_service({MODEL: batcher}, store, free_calls={MODEL: 5}))
    answer = client.get("/v1/models").json
    assert answer["channels"] == CHANNELS
    (model,) = answer["models"]
    assert model["callPrice"] == str(PRICE) and model["freeCalls"] == 5


def test_channel_reads_are_cached_briefly(batcher, store):
    chain = Chain()
    client = client_of(make_service({MODEL: batcher}, store, chain))
    for n in range(1, 4):
        assert call(client, amount=n * PRICE).status_code == 200
    assert chain.reads == 1
