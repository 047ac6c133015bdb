"""EIP-712 signed inference requests: what a buyer's wallet signs and how the server checks it.

Typed data (primary type ``InferenceRequest``)::

    domain  = {name: "Modex", version: "1", chainId: <chain id>,
               verifyingContract: <the Marketplace address>}
    InferenceRequest(uint256 modelId, bytes32 inputsDigest, uint256 nonce, uint256 deadline)

``inputsDigest = sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")))`` over the
UTF-8 bytes, where ``inputs`` is the JSON list of texts exactly as sent (Python's default
``ensure_ascii=True``: non-ASCII characters are written as ``\\uXXXX`` escapes, as in docs/formats.md
§1; a JavaScript client must escape the same way). ``deadline`` is a Unix time in seconds;
``nonce`` any uint256 the signer never used before (random 128 bits by default).

The HTTP body (POST, JSON)::

    {"modelId": 1, "inputs": ["great phone"], "nonce": "0x..." | int, "deadline": 1790000000,
     "signature": "0x<65 bytes>", "signer": "0x<address>" (optional, for clearer errors)}

A browser wallet signs ``typed_data(...)`` with ``eth_signTypedData_v4``; Python callers use
``sign_request(account, ...)`` (an eth-account LocalAccount or anything with ``sign_message``), or
``sign_request_as(signer, ...)`` with a node Signer (node/signer.py: the keystore's wallet, as
`modex call` does). docs/inference-api.md describes the HTTP API for other languages.
"""

from __future__ import annotations

import secrets
import time

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import is_address, to_checksum_address

from node.errors import InputError
from node.onchain import canonical_digest

DOMAIN_NAME = "Modex"
DOMAIN_VERSION = "1"
PRIMARY_TYPE = "InferenceRequest"
TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    PRIMARY_TYPE: [
        {"name": "modelId", "type": "uint256"},
        {"name": "inputsDigest", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}
DEFAULT_TTL = 300  # seconds a signed request stays valid


def inputs_digest(inputs: list[str]) -> bytes:
    """SHA-256 of the canonical JSON of the inputs list (see the module docstring)."""
    return canonical_digest(inputs)


def typed_data(
    *,
    chain_id: int,
    verifying_contract: str,
    model_id: int,
    digest: bytes,
    nonce: int,
    deadline: int,
) -> dict:
    """The full EIP-712 message (JSON-serialisable, for eth_signTypedData_v4 too)."""
    if not is_address(verifying_contract):
        raise InputError(f"verifying contract {verifying_contract!r} is not an address")
    return {
        "types": TYPES,
        "primaryType": PRIMARY_TYPE,
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": int(chain_id),
            "verifyingContract": to_checksum_address(verifying_contract),
        },
        "message": {
            "modelId": int(model_id),
            "inputsDigest": "0x" + bytes(digest).hex(),
            "nonce": int(nonce),
            "deadline": int(deadline),
        },
    }


def _request_message(chain_id, verifying_contract, model_id, inputs, nonce, deadline) -> dict:
    """What a request's signature covers: its EIP-712 message (typed_data), the inputs by their
    digest. The parameters are ``signed_body``'s and ``recover_signer``'s."""
    return typed_data(
        chain_id=chain_id,
        verifying_contract=verifying_contract,
        model_id=model_id,
        digest=inputs_digest(inputs),
        nonce=nonce,
        deadline=deadline,
    )


def sign_request(account, **fields) -> dict:
    """A ready-to-POST request body signed by ``account``: an eth-account LocalAccount, or
    anything whose ``sign_message(SignableMessage)`` returns an object with ``.signature``.
    ``fields`` as ``signed_body`` takes them (model_id, inputs, chain_id, verifying_contract, ...)."""

    def sign(message: dict) -> bytes:
        return account.sign_message(encode_typed_data(full_message=message)).signature

    return signed_body(sign, account.address, **fields)


def sign_request_as(signer, **fields) -> dict:
    """``sign_request`` for a node Signer (node/signer.py), which signs typed data itself:
    ``signer.sign_typed_data(message)`` returns the signature's bytes."""
    return signed_body(signer.sign_typed_data, signer.address, **fields)


def signed_body(
    sign,
    address: str,
    *,
    model_id: int,
    inputs: list[str],
    chain_id: int,
    verifying_contract: str,
    nonce: int | None = None,
    deadline: int | None = None,
    ttl: int = DEFAULT_TTL,
    now: float | None = None,
) -> dict:
    """A ready-to-POST request body by ``address`` for ``inputs`` to ``model_id``, valid for ``ttl``
    seconds (or until ``deadline``), its typed data signed by ``sign(message) -> signature bytes``
    (``message``: the full EIP-712 message of ``typed_data``); ``nonce``: random 128 bits unless
    given."""
    nonce = secrets.randbits(128) if nonce is None else int(nonce)
    deadline = (
        int((time.time() if now is None else now) + ttl) if deadline is None else int(deadline)
    )
    message = _request_message(chain_id, verifying_contract, model_id, inputs, nonce, deadline)
    return {
        "modelId": int(model_id),
        "inputs": list(inputs),
        "nonce": str(nonce),
        "deadline": deadline,
        "signature": "0x" + bytes(sign(message)).hex(),
        "signer": to_checksum_address(address),
    }


def recover_signer(
    *,
    chain_id: int,
    verifying_contract: str,
    model_id: int,
    inputs: list[str],
    nonce: int,
    deadline: int,
    signature: str | bytes,
) -> str:
    """The checksum address that signed this request (raises ValueError on a malformed signature)."""
    message = _request_message(chain_id, verifying_contract, model_id, inputs, nonce, deadline)
    return Account.recover_message(encode_typed_data(full_message=message), signature=signature)
