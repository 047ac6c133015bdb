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

A call paid per call over a payment channel (issue 14 §3) also carries the buyer's voucher:
``"channelId"``, ``"cumulativeAmount"`` (decimal strings) and ``"voucherSignature"`` (0x hex), the
EIP-712 ``Voucher(uint256 channelId, uint256 cumulativeAmount)`` of node/channels.py, whose domain
is the Channels contract; ``with_voucher(body, signer, ...)`` adds them.

A browser wallet signs ``typed_data(...)`` with ``eth_signTypedData_v4``; Python callers use
``sign_request(account, ...)`` (an eth-account LocalAccount or anything with ``sign_message``), or
``sign_request_as(signer, ...)`` with a node Signer (node/signer.py: the keystore's wallet, as
`modex call` does). docs/inference-api.md describes the HTTP API for other languages.
"""

from __future__ import annotations

import functools
import secrets
import time

from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak
from eth_keys import keys
from eth_utils import is_address, to_checksum_address

from node.channels import sign_voucher
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


def with_voucher(
    body: dict,
    signer,
    *,
    chain_id: int,
    channels_address: str,
    channel_id: int,
    cumulative_amount: int,
) -> dict:
    """``body`` paying with a voucher on channel ``channel_id`` for ``cumulative_amount`` in all,
    signed by ``signer`` (a node Signer or an eth-account LocalAccount: the channel's buyer)."""
    signature = sign_voucher(signer, chain_id, channels_address, channel_id, cumulative_amount)
    return body | {
        "channelId": str(int(channel_id)),
        "cumulativeAmount": str(int(cumulative_amount)),
        "voucherSignature": "0x" + bytes(signature).hex(),
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
    """The checksum address that signed this request (recover_typed_data_signer's errors on a
    malformed signature)."""
    message = _request_message(chain_id, verifying_contract, model_id, inputs, nonce, deadline)
    return recover_typed_data_signer(message, signature)


def recover_typed_data_signer(message: dict, signature: str | bytes) -> str:
    """The checksum address whose ``signature`` (65 bytes r, s, v; 0x hex or bytes) signed the
    EIP-712 ``message`` (a full typed-data dict whose structs have atomic fields only, as the
    request's and the voucher's: uint, address, bool, bytes32, string, bytes). The same address
    eth-account's ``Account.recover_message(encode_typed_data(full_message=message))`` gives,
    at a fraction of its CPU (it re-derives the types and the domain for every call; here the
    domain separator and type hashes are cached): the server recovers one or two per request.
    ValueError (or eth_keys' BadSignature) on a malformed signature."""
    raw = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
    if len(raw) != 65:
        raise ValueError(f"a signature is 65 bytes (r, s, v), not {len(raw)}")
    v = raw[64] - 27 if raw[64] >= 27 else raw[64]
    types, domain = message["types"], message["domain"]
    separator = _domain_separator(_frozen(types, "EIP712Domain"), tuple(sorted(domain.items())))
    digest = keccak(
        b"\x19\x01" + separator + _struct_hash(types, message["primaryType"], message["message"])
    )
    vrs = (v, int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"))
    return keys.Signature(vrs=vrs).recover_public_key_from_msg_hash(digest).to_checksum_address()


def _frozen(types: dict, name: str) -> tuple:
    """A struct's fields as a hashable ((name, type), ...), for the caches."""
    return tuple((field["name"], field["type"]) for field in types[name])


@functools.lru_cache(maxsize=256)
def _type_hash(name: str, fields: tuple) -> bytes:
    return keccak(f"{name}({','.join(f'{kind} {field}' for field, kind in fields)})".encode())


@functools.lru_cache(maxsize=256)
def _domain_separator(fields: tuple, domain: tuple) -> bytes:
    values = dict(domain)
    encoded = b"".join(_encode_atomic(kind, values[field]) for field, kind in fields)
    return keccak(_type_hash("EIP712Domain", fields) + encoded)


def _struct_hash(types: dict, name: str, values: dict) -> bytes:
    fields = _frozen(types, name)
    encoded = b"".join(_encode_atomic(kind, values[field]) for field, kind in fields)
    return keccak(_type_hash(name, fields) + encoded)


def _encode_atomic(kind: str, value) -> bytes:
    """One field's 32-byte EIP-712 encoding (atomic types only)."""
    if kind == "string":
        return keccak(value.encode())
    if kind == "bytes":
        return keccak(_as_bytes(value))
    if kind == "address":
        return bytes(12) + _as_bytes(value)
    if kind == "bool":
        return int(bool(value)).to_bytes(32, "big")
    if kind.startswith("uint"):
        return int(value).to_bytes(32, "big")
    if kind == "bytes32" and len(_as_bytes(value)) == 32:
        return _as_bytes(value)
    raise ValueError(f"cannot encode {value!r} as EIP-712 {kind} (this server hashes atomic types)")


def _as_bytes(value) -> bytes:
    return bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
