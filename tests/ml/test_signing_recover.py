"""ml/signing.py's recover_typed_data_signer, the server's own EIP-712 hashing (cached domain
separator and type hashes): the same address as eth-account's recover_message for requests and
vouchers, another address (or an error) for a changed message or signature, and a clear error
for a malformed signature."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.exceptions import BadSignature

from ml import signing
from node.channels import sign_voucher, voucher_typed_data

MARKET = "0x" + "ab" * 20
CHANNELS = "0x" + "cd" * 20


def _reference(message: dict, signature) -> str:
    return Account.recover_message(encode_typed_data(full_message=message), signature=signature)


@pytest.mark.parametrize("chain_id", [1, 31337])
def test_requests_recover_as_eth_account_does(chain_id):
    account = Account.create()
    for model_id, inputs in [(0, ["a"]), (7, ["great phone", "é ☃ \n"]), (2**200, ["x" * 5000])]:
        body = signing.sign_request(
            account, model_id=model_id, inputs=inputs, chain_id=chain_id, verifying_contract=MARKET
        )
        message = signing._request_message(
            chain_id, MARKET, model_id, inputs, int(body["nonce"]), body["deadline"]
        )
        assert signing.recover_typed_data_signer(message, body["signature"]) == account.address
        assert _reference(message, body["signature"]) == account.address
        changed = signing._request_message(
            chain_id, MARKET, model_id + 1, inputs, int(body["nonce"]), body["deadline"]
        )
        assert signing.recover_typed_data_signer(changed, body["signature"]) == _reference(
            changed, body["signature"]
        )
        assert _reference(changed, body["signature"]) != account.address


def test_vouchers_recover_as_eth_account_does():
    account = Account.create()
    for channel_id, amount in [(0, 1), (5, 10**12), (2**255, 2**256 - 1)]:
        signature = sign_voucher(account, 31337, CHANNELS, channel_id, amount)
        message = voucher_typed_data(31337, CHANNELS, channel_id, amount)
        assert signing.recover_typed_data_signer(message, signature) == account.address
        assert signing.recover_typed_data_signer(message, "0x" + signature.hex()) == (
            account.address
        )
        other = voucher_typed_data(31338, CHANNELS, channel_id, amount)  # another chain
        assert signing.recover_typed_data_signer(other, signature) == _reference(other, signature)
        assert signing.recover_typed_data_signer(other, signature) != account.address


def test_malformed_signatures_are_refused():
    message = voucher_typed_data(1, CHANNELS, 1, 1)
    with pytest.raises(ValueError, match="65 bytes"):
        signing.recover_typed_data_signer(message, "0x1234")
    with pytest.raises(ValueError):
        signing.recover_typed_data_signer(message, "0xzz" + "00" * 64)
    with pytest.raises(BadSignature):  # r = s = 0
        signing.recover_typed_data_signer(message, "0x" + "00" * 65)
