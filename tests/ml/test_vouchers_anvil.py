"""The channel lifecycle on anvil through HTTP (issue 14 §3): the seller sets a price per call,
the buyer opens a channel, `modex serve` answers 100 paid calls (each voucher one price more) and
`modex call --channel` two more, the seller's claimer claims them all in one transaction, and after
expiry the buyer reclaims the rest. The same service gives a stranger its two free calls
(`--free-calls 2`), then says how to pay."""

from __future__ import annotations

import json

import httpx
import pytest
from eth_account import Account

from ml import signing
from modex import cli
from node.amounts import fmt_amount
from node.claimer import Claimer
from node.keystore import PASSWORD_ENV, import_private_key
from node.procs import stop_process
from node.servicestore import open_service_store
from node.signer import LocalSigner
from tests.ml.channel_helpers import DAY, ETH, channel_deployment
from tests.ml.conftest import send_tx, start_modex_serve

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

PRICE = 10**12  # wei per call
DEPOSIT = 500 * PRICE
FEE_BPS = 250
PASSWORD = "voucher test password"


def test_open_100_paid_calls_claim_and_reclaim(anvil, tiny_model, tmp_path, monkeypatch, capsys):
    paid = channel_deployment(
        anvil.url,
        tmp_path,
        price=PRICE,
        deposit=DEPOSIT,
        cid="bafkreitestmodexvouchers",
        fee_bps=FEE_BPS,
    )
    chain, seller, buyer = paid.chain, paid.seller, paid.buyer
    model_id, channel_id, config = paid.model_id, paid.channel_id, paid.config
    w3, channels = chain.w3, chain.contract("Channels")

    store_file = tmp_path / "service.sqlite3"
    with open(tmp_path / "serve.log", "w+") as log:
        proc, port, banner = start_modex_serve(
            tiny_model[0],
            model_id,
            config,
            ["--nonce-db", str(store_file), "--free-calls", "2"],
            log,
        )
        try:
            assert "serving model" in banner, banner + log.read()
            url = f"http://127.0.0.1:{port}"
            listed = httpx.get(url + "/v1/models").json()
            assert listed["channels"] == channels.address
            assert listed["models"][0]["callPrice"] == str(PRICE)

            # 100 calls through HTTP, each voucher one price more than the last
            with httpx.Client(base_url=url, timeout=60) as client:
                for n in range(1, 101):
                    body = signing.with_voucher(
                        signing.sign_request(
                            buyer,
                            model_id=model_id,
                            inputs=[f"call {n}: great phone"],
                            chain_id=chain.chain_id,
                            verifying_contract=chain.marketplace.address,
                        ),
                        buyer,
                        chain_id=chain.chain_id,
                        channels_address=channels.address,
                        channel_id=channel_id,
                        cumulative_amount=n * PRICE,
                    )
                    r = client.post("/v1/infer", json=body)
                    assert r.status_code == 200, r.text
                    assert r.json()["paidWith"]["cumulativeAmount"] == str(n * PRICE)

            # a stranger without licence or channel: the seller's two free calls, then words
            stranger = Account.create()
            answers = [
                httpx.post(
                    url + "/v1/infer",
                    json=signing.sign_request(
                        stranger,
                        model_id=model_id,
                        inputs=["is this free?"],
                        chain_id=chain.chain_id,
                        verifying_contract=chain.marketplace.address,
                    ),
                    timeout=60,
                )
                for _ in range(3)
            ]
            assert [a.status_code for a in answers] == [200, 200, 403]
            assert answers[0].json()["paidWith"] == {"kind": "trial"}
            refusal = answers[2].json()["error"]["message"]
            assert "the 2 free calls of the trial are used" in refusal
            assert f"modex channel open {model_id}" in refusal

            # modex call --channel: the next voucher from the service's 409, then from its file
            keystore = tmp_path / "buyer.json"
            import_private_key(keystore, buyer.key.hex(), PASSWORD, scrypt_n=2**4)
            monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
            monkeypatch.delenv("MODEX_CHAIN", raising=False)
            book = tmp_path / "vouchers.json"
            key = f"{chain.chain_id}/{channels.address.lower()}/{channel_id}"
            book.write_text(json.dumps({key: {"used": "0", "signed": str(100 * PRICE)}}))
            argv = ["call", str(model_id), "great phone", "--url", url, "--config", str(config)]
            argv += ["--keystore", str(keystore), "--channel", str(channel_id)]
            for calls in (101, 102):
                assert cli.main(argv) == 0
                out, err = capsys.readouterr()
                assert out.strip()
                assert f"on channel {channel_id}: {fmt_amount(calls * PRICE)} in all so far" in err
            assert json.loads(book.read_text())[key]["used"] == str(102 * PRICE)
        finally:
            stop_process(proc, timeout=20)

    # the seller claims all 102 calls in one transaction
    store = open_service_store(store_file)
    claimer = Claimer(chain, LocalSigner(seller), store, threshold_calls=100)
    assert claimer.poll().claimed == {channel_id: 102 * PRICE}
    (claimed,) = chain.events("ChannelClaimed")
    assert claimed["args"]["paid"] + claimed["args"]["fee"] == 102 * PRICE
    assert chain.call(channels.functions.credited(seller.address, ETH)) == claimed["args"]["paid"]
    assert claimer.poll().claimed == {}

    # after expiry the buyer takes back what was not claimed
    w3.provider.make_request("evm_increaseTime", [8 * DAY])
    w3.provider.make_request("evm_mine", [])
    before = w3.eth.get_balance(buyer.address)
    receipt = send_tx(w3, buyer, channels.functions.reclaim(channel_id))
    (closed,) = channels.events.ChannelClosed().process_receipt(receipt)
    assert closed["args"]["returned"] == DEPOSIT - 102 * PRICE
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(buyer.address) == before + DEPOSIT - 102 * PRICE - gas
    store.close()
