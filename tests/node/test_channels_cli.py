"""`modex channel` as a buyer and a seller on the embedded chain: the seller sets a price per call,
the buyer opens a channel, the seller claims the buyer's vouchers from a voucher file and from the
service's state store, withdraws, and the buyer lists the channel and reclaims the rest after its
expiry; a refusal is one sentence and exit 1."""

from __future__ import annotations

import json
import re

import pytest
from modex_stack import make_stack
from web3.logs import DISCARD

from node.channels import ChannelClient, sign_voucher
from node.servicestore import open_service_store

FEE_BPS = 250
PRICE = 10**14  # 0.0001 ETH per call


def ok(result) -> str:
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    return out


@pytest.fixture
def stack(tmp_path):
    return make_stack("embedded", tmp_path, fee_bps=FEE_BPS)


def listed(stack) -> int:
    chain, seller = stack.chain, stack.signers["seller"]
    receipt = chain.transact(
        chain.registry.functions.list(b"\x22" * 32, "bafy-cli", 10**16), seller
    )
    events = chain.registry.events.ModelListed().process_receipt(receipt, errors=DISCARD)
    return events[0]["args"]["modelId"]


def test_a_channel_opened_claimed_withdrawn_and_reclaimed_through_the_cli(stack, tmp_path):
    model_id = listed(stack)
    client = ChannelClient.for_chain(stack.chain)
    out = ok(stack.cli("seller", "channel", "price", str(model_id), "--set", "0.0001"))
    assert f"model {model_id}: 0.0001 ETH per call" in out
    out = ok(
        stack.cli("buyer", "channel", "open", str(model_id), "--amount", "0.01", "--days", "1")
    )
    channel_id = int(re.search(r"channel (\d+): model", out).group(1))
    assert "0.01 ETH deposited, 0 ETH claimed" in out and "(100 calls deposited)" in out
    buyer = stack.signers["buyer"]

    def voucher(calls: int) -> bytes:
        return sign_voucher(buyer, stack.chain.chain_id, client.address, channel_id, calls * PRICE)

    # three calls: the seller claims the highest voucher from a file
    path = tmp_path / "voucher.json"
    body = {"channelId": channel_id, "cumulativeAmount": 3 * PRICE}
    path.write_text(json.dumps({**body, "signature": "0x" + voucher(3).hex()}))
    out = ok(stack.cli("seller", "channel", "claim", str(channel_id), "--voucher-file", str(path)))
    assert "claimed up to 0.0003 ETH" in out and "0.0000075 ETH fee" in out
    out = ok(stack.cli("seller", "channel", "claim", "--voucher-file", str(path)))
    assert "nothing new to claim" in out
    # five more calls, stored by the service: claimed from its state store, then marked
    store_path = tmp_path / "state.sqlite3"
    store = open_service_store(store_path)
    for calls in range(1, 9):
        assert store.accept_voucher(
            channel_id,
            calls * PRICE,
            voucher(calls),
            previous_at_most=(calls - 1) * PRICE,
            limit=10**16,
        )
    out = ok(stack.cli("seller", "channel", "claim", "--state", str(store_path)))
    assert "claimed up to 0.0008 ETH" in out
    assert store.vouchers_to_claim() == []
    store.close()
    assert client.channel(channel_id).claimed == 8 * PRICE
    out = ok(stack.cli("seller", "channel", "withdraw"))
    assert "withdrew 0.00078 ETH from Channels" in out  # 0.0008 less 2.5 %

    out = ok(stack.cli("buyer", "channel", "list", "--json"))
    listed_channel = json.loads(out.splitlines()[0])
    assert (listed_channel["channel_id"], listed_channel["remaining"]) == (channel_id, 92 * PRICE)

    code, _out, err = stack.cli("buyer", "channel", "reclaim", str(channel_id))
    assert code == 1 and "can reclaim the rest only after" in err and "Traceback" not in err
    stack.time_travel(2 * 86400)
    out = ok(stack.cli("buyer", "channel", "reclaim", str(channel_id)))
    assert f"channel {channel_id} closed: 0.0092 ETH returned to you" in out


def test_bad_arguments_are_refused_before_anything_is_sent(stack, tmp_path):
    with pytest.raises(SystemExit) as exited:  # argparse: usage and exit 2
        stack.cli("buyer", "channel", "open", "1", "--amount", "1", "--days", "0")
    assert exited.value.code == 2
    (tmp_path / "bad.json").write_text("{}")
    model_id = listed(stack)
    code, _out, err = stack.cli(
        "seller", "channel", "claim", "--voucher-file", str(tmp_path / "bad.json")
    )
    assert code == 1 and "is not a voucher file" in err
    code, _out, err = stack.cli("seller", "channel", "claim")
    assert code == 1 and "no voucher source" in err
    code, _out, err = stack.cli("buyer", "channel", "price", str(model_id), "--set", "1")
    assert code == 1 and f"Only the owner of model {model_id}" in err
