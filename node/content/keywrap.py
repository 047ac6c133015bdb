"""Key wrapping to a buyer or validator (docs/formats.md §4): RFC 9180 HPKE, base mode.

Suite: DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM (kem 0x0020, kdf 0x0001,
aead 0x0002), through PyPI ``pyhpke``.

    info      = b"modex/v1/key" || u64be(chainId) || marketplace address (20) || u256be(purchaseId)
    (a later version's key, ``Marketplace.deliverVersionKeys``: b"modex/v1/version-key" ||
    u64be(chainId) || marketplace (20) || u256be(modelId) || u256be(version) || account (20))
    aad       = b""
    plaintext = the 32-byte content key
    wire form = enc (32) || ciphertext (32 + 16 tag) = 80 bytes, delivered on-chain

The recipient's X25519 key pair is derived from the wallet, so nobody keeps a second secret:
``sk = HKDF-SHA256(ikm = 65-byte EIP-191 signature of encryption_message(chainId, address),
salt = b"", info = b"modex/v1/x25519", length 32)``, clamped by X25519 itself. Wallets sign
deterministically (RFC 6979), so the same wallet always derives the same key.
"""

from __future__ import annotations

import logging
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey, KEMKeyPair, PyHPKEError

from node.errors import KeyWrapError

log = logging.getLogger(__name__)

INFO_LABEL = b"modex/v1/key"
# Private feedback to a seller (node/feedback.py): FEEDBACK_INFO_LABEL || u64be(chainId) ||
# Votes address (20) || u256be(modelId).
FEEDBACK_INFO_LABEL = b"modex/v1/feedback"
# A later version's key to a licence holder (Marketplace.deliverVersionKeys): VERSION_INFO_LABEL ||
# u64be(chainId) || marketplace (20) || u256be(modelId) || u256be(version) || account (20).
VERSION_INFO_LABEL = b"modex/v1/version-key"
X25519_INFO = b"modex/v1/x25519"
WRAPPED_SIZE = 80
ENC_SIZE = 32
CONTENT_KEY_SIZE = 32

SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)


def _address_bytes(address: str | bytes, what: str = "marketplace") -> bytes:
    if isinstance(address, (bytes, bytearray)):
        raw = bytes(address)
    else:
        text = address[2:] if address[:2].lower() == "0x" else address
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
    if len(raw) != 20:
        raise KeyWrapError(f"{what} must be a 20-byte address (0x + 40 hex), got {address!r}")
    return raw


def _u256(value: int, what: str) -> bytes:
    if not isinstance(value, int) or not 0 <= value < 1 << 256:
        raise KeyWrapError(f"{what} must be an unsigned 256-bit integer, got {value!r}")
    return value.to_bytes(32, "big")


def _chain_and_market(label: bytes, chain_id: int, marketplace: str | bytes) -> bytes:
    """The head every ``info`` here shares: its label, u64be(chainId), the marketplace's 20 bytes."""
    if not isinstance(chain_id, int) or not 0 <= chain_id < 1 << 64:
        raise KeyWrapError(f"chain id must be an unsigned 64-bit integer, got {chain_id!r}")
    return label + struct.pack(">Q", chain_id) + _address_bytes(marketplace)


def key_info(chain_id: int, marketplace: str | bytes, purchase_id: int) -> bytes:
    """The HPKE ``info`` that binds a wrapped key to one purchase on one marketplace and chain."""
    head = _chain_and_market(INFO_LABEL, chain_id, marketplace)
    return head + _u256(purchase_id, "purchase id")


def version_key_info(
    chain_id: int, marketplace: str | bytes, model_id: int, version: int, account: str | bytes
) -> bytes:
    """The HPKE ``info`` of a later version's key: bound to one (model, version, licence holder)
    on one marketplace and chain, so a key delivered for one version or holder opens no other."""
    head = _chain_and_market(VERSION_INFO_LABEL, chain_id, marketplace)
    tail = _u256(model_id, "model id") + _u256(version, "version")
    return head + tail + _address_bytes(account, "account")


def _public_key(raw: bytes):
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != 32:
        raise KeyWrapError("the recipient's X25519 public key must be 32 bytes (64 hex chars)")
    return KEMKey.from_pyca_cryptography_key(X25519PublicKey.from_public_bytes(bytes(raw)))


def _private_key(raw: bytes) -> X25519PrivateKey:
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != 32:
        raise KeyWrapError("an X25519 secret key must be 32 bytes (64 hex chars)")
    return X25519PrivateKey.from_private_bytes(bytes(raw))


def x25519_public(secret: bytes) -> bytes:
    """The 32-byte X25519 public key of a 32-byte secret."""
    return _private_key(secret).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def hpke_seal(
    recipient_pub: bytes,
    plaintext: bytes,
    *,
    info: bytes,
    aad: bytes = b"",
    eph_secret: bytes | None = None,
) -> tuple[bytes, bytes]:
    """Single-shot HPKE base-mode seal for this suite; returns (enc, ciphertext).

    ``eph_secret`` fixes the ephemeral key (known-answer tests only: a reused ephemeral key
    breaks the scheme's security).
    """
    pkr = _public_key(recipient_pub)
    eks = None
    if eph_secret is not None:
        sk = _private_key(eph_secret)
        eks = KEMKeyPair(
            KEMKey.from_pyca_cryptography_key(sk),
            KEMKey.from_pyca_cryptography_key(sk.public_key()),
        )
    try:
        enc, ctx = SUITE.create_sender_context(pkr, info=info, eks=eks)
        return enc, ctx.seal(plaintext, aad=aad)
    except (PyHPKEError, ValueError) as exc:
        raise KeyWrapError(f"HPKE seal failed: {exc}") from None


def hpke_open(
    enc: bytes, recipient_secret: bytes, ciphertext: bytes, *, info: bytes, aad: bytes = b""
) -> bytes:
    """Single-shot HPKE base-mode open for this suite; KeyWrapError if it does not authenticate."""
    skr = KEMKey.from_pyca_cryptography_key(_private_key(recipient_secret))
    try:
        ctx = SUITE.create_recipient_context(bytes(enc), skr, info=info)
        return ctx.open(bytes(ciphertext), aad=aad)
    except (PyHPKEError, ValueError) as exc:
        raise KeyWrapError(
            "cannot unwrap the key: it was wrapped to another recipient or for another "
            f"purchase, chain or marketplace, or it is corrupt ({type(exc).__name__})"
        ) from None


def wrap_key(
    recipient_pub: bytes,
    content_key: bytes,
    *,
    chain_id: int,
    marketplace: str | bytes,
    purchase_id: int,
    eph_secret: bytes | None = None,
) -> bytes:
    """Wrap a 32-byte content key to a recipient's X25519 public key; return the 80-byte wire form."""
    info = key_info(chain_id, marketplace, purchase_id)
    return wrap_with_info(recipient_pub, content_key, info=info, eph_secret=eph_secret)


def wrap_with_info(
    recipient_pub: bytes, content_key: bytes, *, info: bytes, eph_secret: bytes | None = None
) -> bytes:
    """``wrap_key`` for a given ``info`` (``key_info`` or ``version_key_info``): the 80 bytes."""
    if not isinstance(content_key, (bytes, bytearray)) or len(content_key) != CONTENT_KEY_SIZE:
        raise KeyWrapError(f"the content key must be {CONTENT_KEY_SIZE} bytes")
    enc, ct = hpke_seal(recipient_pub, bytes(content_key), info=info, eph_secret=eph_secret)
    wrapped = enc + ct
    assert len(wrapped) == WRAPPED_SIZE
    return wrapped


def unwrap_key(
    wrapped: bytes,
    recipient_secret: bytes,
    *,
    chain_id: int,
    marketplace: str | bytes,
    purchase_id: int,
) -> bytes:
    """Unwrap an 80-byte wrapped key with the recipient's X25519 secret; KeyWrapError on failure."""
    info = key_info(chain_id, marketplace, purchase_id)
    return unwrap_with_info(wrapped, recipient_secret, info=info)


def unwrap_with_info(wrapped: bytes, recipient_secret: bytes, *, info: bytes) -> bytes:
    """``unwrap_key`` for a given ``info`` (``key_info`` or ``version_key_info``)."""
    if not isinstance(wrapped, (bytes, bytearray)) or len(wrapped) != WRAPPED_SIZE:
        got = len(wrapped) if isinstance(wrapped, (bytes, bytearray)) else type(wrapped).__name__
        raise KeyWrapError(f"a wrapped key is {WRAPPED_SIZE} bytes (160 hex chars), got {got}")
    key = hpke_open(wrapped[:ENC_SIZE], recipient_secret, wrapped[ENC_SIZE:], info=info)
    if len(key) != CONTENT_KEY_SIZE:
        raise KeyWrapError(f"the unwrapped key has {len(key)} bytes, not {CONTENT_KEY_SIZE}")
    return key


def encryption_message(chain_id: int, address: str) -> str:
    """The EIP-191 personal message a wallet signs to derive its Modex encryption key."""
    try:
        checksum = to_checksum_address(address)
    except ValueError:
        raise KeyWrapError(f"{address!r} is not an Ethereum address") from None
    return f"Modex encryption key v1\nchain: {int(chain_id)}\naccount: {checksum}"


def x25519_from_signature(signature: bytes) -> tuple[bytes, bytes]:
    """(secret, public) X25519 keys from the 65-byte wallet signature (§4.3)."""
    if len(signature) != 65:
        raise KeyWrapError(f"expected a 65-byte wallet signature, got {len(signature)} bytes")
    secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=X25519_INFO).derive(
        bytes(signature)
    )
    return secret, x25519_public(secret)


def derive_x25519(signer, chain_id: int) -> tuple[bytes, bytes]:
    """The wallet's X25519 (secret, public) pair.

    ``signer`` has ``.address`` and ``sign_message(SignableMessage)`` returning either the
    65-byte signature (node.signer.LocalSigner) or an object with ``.signature`` (eth-account's
    LocalAccount).
    """
    message = encode_defunct(text=encryption_message(chain_id, signer.address))
    signed = signer.sign_message(message)
    return x25519_from_signature(bytes(getattr(signed, "signature", signed)))
