"""HPKE key wrapping (docs/formats.md §4) checked against RFC 9180 and an independent construction.

RFC 9180 has no printed vector for X25519/HKDF-SHA256/AES-256-GCM, so: (1) an independent
HPKE base-mode sealer written here from the RFC's text with `cryptography` primitives is checked
against the RFC's vector A.1.1 (the same KEM and KDF with AES-128-GCM), as is pyhpke; (2) that
sealer, switched to 32-byte keys, must produce exactly what node.content.keywrap produces.
"""

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_account.messages import encode_defunct
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey, KEMKeyPair

from node.content.keywrap import (
    derive_x25519,
    encryption_message,
    hpke_open,
    hpke_seal,
    key_info,
    unwrap_key,
    wrap_key,
    x25519_from_signature,
    x25519_public,
)
from node.errors import KeyWrapError

h = bytes.fromhex

# RFC 9180 Appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode.
A11 = {
    "info": h("4f6465206f6e2061204772656369616e2055726e"),
    "skEm": h("52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736"),
    "pkEm": h("37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431"),
    "skRm": h("4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8"),
    "pkRm": h("3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d"),
    "shared_secret": h("fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc"),
    "key": h("4531685d41d65f03dc48f6b8302c05b0"),
    "base_nonce": h("56d890e5accaaf011cff4b7d"),
    "pt": h("4265617574792069732074727574682c20747275746820626561757479"),
    "aad0": h("436f756e742d30"),
    "ct0": h(
        "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a"
    ),
}


# ---- an independent HPKE base-mode sealer (RFC 9180 §4, §4.1, §5.1), cryptography + hmac only


def _extract(salt, ikm):
    return hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()


def _expand(prk, info, length):
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + t, i + 1
    return out[:length]


def _labeled_extract(suite, salt, label, ikm):
    return _extract(salt, b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(suite, prk, label, info, length):
    return _expand(prk, struct.pack(">H", length) + b"HPKE-v1" + suite + label + info, length)


def independent_seal(pk_r, pt, info, aad, sk_e, aead_id):
    nk = {1: 16, 2: 32}[aead_id]
    kem_suite = b"KEM" + struct.pack(">H", 0x20)
    suite = b"HPKE" + struct.pack(">HHH", 0x20, 0x01, aead_id)
    eph = X25519PrivateKey.from_private_bytes(sk_e)
    enc = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    dh = eph.exchange(X25519PublicKey.from_public_bytes(pk_r))
    prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh)
    shared = _labeled_expand(kem_suite, prk, b"shared_secret", enc + pk_r, 32)
    context = (
        b"\x00"
        + _labeled_extract(suite, b"", b"psk_id_hash", b"")
        + _labeled_extract(suite, b"", b"info_hash", info)
    )
    secret = _labeled_extract(suite, shared, b"secret", b"")
    key = _labeled_expand(suite, secret, b"key", context, nk)
    nonce = _labeled_expand(suite, secret, b"base_nonce", context, 12)
    return {
        "enc": enc,
        "shared_secret": shared,
        "key": key,
        "base_nonce": nonce,
        "ct": AESGCM(key).encrypt(nonce, pt, aad),
    }


def test_independent_construction_matches_rfc9180_a11():
    got = independent_seal(A11["pkRm"], A11["pt"], A11["info"], A11["aad0"], A11["skEm"], 1)
    assert got["enc"] == A11["pkEm"]
    assert got["shared_secret"] == A11["shared_secret"]
    assert got["key"] == A11["key"]
    assert got["base_nonce"] == A11["base_nonce"]
    assert got["ct"] == A11["ct0"]


def test_pyhpke_matches_rfc9180_a11():
    suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES128_GCM)
    sk = X25519PrivateKey.from_private_bytes(A11["skEm"])
    eks = KEMKeyPair(
        KEMKey.from_pyca_cryptography_key(sk), KEMKey.from_pyca_cryptography_key(sk.public_key())
    )
    pkr = KEMKey.from_pyca_cryptography_key(X25519PublicKey.from_public_bytes(A11["pkRm"]))
    enc, ctx = suite.create_sender_context(pkr, info=A11["info"], eks=eks)
    assert enc == A11["pkEm"]
    assert ctx.seal(A11["pt"], aad=A11["aad0"]) == A11["ct0"]
    assert x25519_public(A11["skRm"]) == A11["pkRm"]


def test_our_suite_equals_independent_aes256_construction():
    enc, ct = hpke_seal(
        A11["pkRm"], A11["pt"], info=A11["info"], aad=A11["aad0"], eph_secret=A11["skEm"]
    )
    ref = independent_seal(A11["pkRm"], A11["pt"], A11["info"], A11["aad0"], A11["skEm"], 2)
    assert (enc, ct) == (ref["enc"], ref["ct"])
    assert hpke_open(enc, A11["skRm"], ct, info=A11["info"], aad=A11["aad0"]) == A11["pt"]


MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CONTENT_KEY = bytes(range(100, 132))


def test_info_layout():
    info = key_info(31337, MARKET, 7)
    assert info == (
        b"modex/v1/key" + (31337).to_bytes(8, "big") + h(MARKET[2:]) + (7).to_bytes(32, "big")
    )
    assert len(info) == 12 + 8 + 20 + 32


def test_wrap_known_answer_and_wire_form():
    wrapped = wrap_key(
        A11["pkRm"],
        CONTENT_KEY,
        chain_id=31337,
        marketplace=MARKET,
        purchase_id=7,
        eph_secret=A11["skEm"],
    )
    ref = independent_seal(
        A11["pkRm"], CONTENT_KEY, key_info(31337, MARKET, 7), b"", A11["skEm"], 2
    )
    assert wrapped == ref["enc"] + ref["ct"]
    assert len(wrapped) == 80 and wrapped[:32] == A11["pkEm"]
    assert (
        unwrap_key(wrapped, A11["skRm"], chain_id=31337, marketplace=MARKET, purchase_id=7)
        == CONTENT_KEY
    )


def test_wrap_is_randomised_but_unwraps():
    a = wrap_key(A11["pkRm"], CONTENT_KEY, chain_id=1, marketplace=MARKET, purchase_id=1)
    b = wrap_key(A11["pkRm"], CONTENT_KEY, chain_id=1, marketplace=MARKET, purchase_id=1)
    assert a != b
    for w in (a, b):
        assert (
            unwrap_key(w, A11["skRm"], chain_id=1, marketplace=MARKET, purchase_id=1) == CONTENT_KEY
        )


@pytest.mark.parametrize(
    "change",
    [
        {"purchase_id": 8},
        {"chain_id": 1},
        {"marketplace": "0x" + "00" * 20},
        {"secret": bytes(range(32))},
    ],
)
def test_wrong_purchase_chain_market_or_recipient(change):
    wrapped = wrap_key(A11["pkRm"], CONTENT_KEY, chain_id=31337, marketplace=MARKET, purchase_id=7)
    args = {"chain_id": 31337, "marketplace": MARKET, "purchase_id": 7} | change
    secret = args.pop("secret", A11["skRm"])
    with pytest.raises(KeyWrapError, match="cannot unwrap"):
        unwrap_key(wrapped, secret, **args)


def test_corrupt_and_malformed_inputs():
    wrapped = bytearray(
        wrap_key(A11["pkRm"], CONTENT_KEY, chain_id=1, marketplace=MARKET, purchase_id=1)
    )
    for pos in (0, 40, 79):
        bad = bytearray(wrapped)
        bad[pos] ^= 1
        with pytest.raises(KeyWrapError):
            unwrap_key(bytes(bad), A11["skRm"], chain_id=1, marketplace=MARKET, purchase_id=1)
    with pytest.raises(KeyWrapError, match="80 bytes"):
        unwrap_key(bytes(wrapped[:79]), A11["skRm"], chain_id=1, marketplace=MARKET, purchase_id=1)
    with pytest.raises(KeyWrapError, match="20-byte address"):
        wrap_key(A11["pkRm"], CONTENT_KEY, chain_id=1, marketplace="0x1234", purchase_id=1)
    with pytest.raises(KeyWrapError, match="32 bytes"):
        wrap_key(A11["pkRm"], b"short", chain_id=1, marketplace=MARKET, purchase_id=1)
    with pytest.raises(KeyWrapError, match="public key"):
        wrap_key(b"\1" * 31, CONTENT_KEY, chain_id=1, marketplace=MARKET, purchase_id=1)
    with pytest.raises(KeyWrapError, match="purchase id"):
        wrap_key(A11["pkRm"], CONTENT_KEY, chain_id=1, marketplace=MARKET, purchase_id=-1)
    with pytest.raises(KeyWrapError, match="chain id"):
        wrap_key(A11["pkRm"], CONTENT_KEY, chain_id=1 << 64, marketplace=MARKET, purchase_id=1)


# anvil's first dev account: a public, well-known key.
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def test_encryption_message_text():
    acct = Account.from_key(DEV_KEY)
    assert encryption_message(31337, acct.address.lower()) == (
        "Modex encryption key v1\nchain: 31337\naccount: 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    )
    with pytest.raises(KeyWrapError, match="not an Ethereum address"):
        encryption_message(1, "0x1234")


def test_wallet_derivation_is_deterministic_and_matches_the_spec():
    acct = Account.from_key(DEV_KEY)
    secret, public = derive_x25519(acct, 31337)
    assert (secret, public) == derive_x25519(acct, 31337)
    # Re-derive by the design page's words: HKDF-SHA256(sig, salt="", info="modex/v1/x25519").
    sig = acct.sign_message(encode_defunct(text=encryption_message(31337, acct.address))).signature
    assert len(sig) == 65
    prk = _extract(b"", bytes(sig))
    assert secret == _expand(prk, b"modex/v1/x25519", 32)
    assert public == x25519_public(secret)
    assert (secret, public) == x25519_from_signature(bytes(sig))
    # Another chain gives another key; the derived pair works end to end.
    assert derive_x25519(acct, 1)[1] != public
    wrapped = wrap_key(public, CONTENT_KEY, chain_id=31337, marketplace=MARKET, purchase_id=3)
    assert (
        unwrap_key(wrapped, secret, chain_id=31337, marketplace=MARKET, purchase_id=3)
        == CONTENT_KEY
    )


def test_signer_returning_raw_bytes_is_accepted():
    acct = Account.from_key(DEV_KEY)

    class RawSigner:
        address = acct.address

        def sign_message(self, message):
            return bytes(acct.sign_message(message).signature)

    assert derive_x25519(RawSigner(), 5) == derive_x25519(acct, 5)
