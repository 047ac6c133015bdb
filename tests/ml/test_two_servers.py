"""Two `modex serve` servers (separate processes on their own ports, as on two machines) serving
one model with one shared state store, Redis or Postgres (issue 14 §4): a signed request served
by one is refused as replayed by the other, and a voucher paid on one buys no second call on the
other, whichever answered first."""

from __future__ import annotations

import contextlib

import httpx
import pytest

from ml import signing
from node.procs import stop_process
from tests.ml.channel_helpers import channel_deployment
from tests.ml.conftest import start_modex_serve
from tests.node.servicestore_servers import postgres_server, redis_server

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

PRICE = 10**12  # wei per call
DEPOSIT = 10 * PRICE


@pytest.fixture(params=["redis", "postgres"])
def state_url(request):
    with (redis_server if request.param == "redis" else postgres_server)() as url:
        yield url


@contextlib.contextmanager
def serving(model_dir, model_id, config, state_url, log_path):
    """`modex serve --state STATE_URL` running; yields its base URL."""
    with open(log_path, "w+") as log:
        proc, port, banner = start_modex_serve(
            model_dir, model_id, config, ["--state", state_url], log
        )
        try:
            if "serving model" not in banner:
                stop_process(proc)
                log.seek(0)
                pytest.fail(f"modex serve did not start: {banner}{log.read()}")
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process(proc, timeout=20)


def test_a_nonce_or_voucher_used_on_one_server_is_refused_on_the_other(
    anvil, tiny_model, tmp_path, state_url
):
    paid_channel = channel_deployment(anvil.url, tmp_path, price=PRICE, deposit=DEPOSIT)
    chain, buyer, model_id = paid_channel.chain, paid_channel.buyer, paid_channel.model_id
    channel_id, config = paid_channel.channel_id, paid_channel.config

    def paid(text: str, amount: int) -> dict:
        """A request paying with the voucher for ``amount`` in all."""
        request = signing.sign_request(
            buyer,
            model_id=model_id,
            inputs=[text],
            chain_id=chain.chain_id,
            verifying_contract=chain.marketplace.address,
        )
        return signing.with_voucher(
            request,
            buyer,
            chain_id=chain.chain_id,
            channels_address=chain.contract("Channels").address,
            channel_id=channel_id,
            cumulative_amount=amount,
        )

    model_dir = tiny_model[0]
    with (
        serving(model_dir, model_id, config, state_url, tmp_path / "a.log") as first,
        serving(model_dir, model_id, config, state_url, tmp_path / "b.log") as second,
    ):
        amount = 0
        for answers, other in ((first, second), (second, first)):
            amount += PRICE
            body = paid("great phone, love it", amount)
            r = httpx.post(f"{answers}/v1/infer", json=body, timeout=60)
            assert r.status_code == 200, r.text
            replay = httpx.post(f"{other}/v1/infer", json=body, timeout=60)
            assert replay.status_code == 409, replay.text
            assert replay.json()["error"]["code"] == "replayed"
            # the same voucher in a new request: the other server knows it paid for a call
            again = httpx.post(f"{other}/v1/infer", json=paid("again", amount), timeout=60)
            assert again.status_code == 409, again.text
            assert again.json()["error"]["code"] == "voucher_stale"
        # neither server keeps a state of its own in the data dir: it is all in the store
        assert not (tmp_path / "service").exists()
