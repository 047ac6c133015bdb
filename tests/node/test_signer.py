"""node/signer.py and node/keystore.py: signatures verify, keystores are encrypted, 0600, atomic."""

import json
import logging
import os
import stat

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data

from node.errors import KeystoreError
from node.keystore import (
    create_keystore,
    import_private_key,
    keystore_address,
    load_signer,
    read_password,
)
from node.signer import LocalSigner, Signer, dev_signer, signer_from_key

FAST = 2**10  # scrypt N for tests; the default 2**18 takes ~0.5 s per operation
KEY = "0x" + "11" * 32

TYPED = {
    "types": {
        "EIP712Domain": [
            {"name": "name", "type": "string"},
            {"name": "chainId", "type": "uint256"},
        ],
        "Request": [{"name": "modelId", "type": "uint256"}, {"name": "nonce", "type": "uint256"}],
    },
    "primaryType": "Request",
    "domain": {"name": "Modex", "chainId": 31337},
    "message": {"modelId": 3, "nonce": 9},
}


def test_local_signer_signatures_recover_to_its_address():
    signer = signer_from_key(KEY)
    assert isinstance(signer, Signer)
    sig = signer.sign_message("hello")
    assert len(sig) == 65
    assert Account.recover_message(encode_defunct(text="hello"), signature=sig) == signer.address
    typed = signer.sign_typed_data(TYPED)
    assert (
        Account.recover_message(encode_typed_data(full_message=TYPED), signature=typed)
        == signer.address
    )
    tx = {
        "to": signer.address,
        "value": 1,
        "gas": 21000,
        "maxFeePerGas": 10**9,
        "maxPriorityFeePerGas": 1,
        "nonce": 0,
        "chainId": 31337,
        "type": 2,
    }
    raw = signer.sign_transaction(tx)
    assert isinstance(raw, bytes)
    assert Account.recover_transaction(raw) == signer.address
    # Deterministic (RFC 6979): the X25519 derivation of docs/formats.md §4 depends on it.
    assert signer.sign_message("hello") == sig
    assert "11" * 8 not in repr(signer)


def test_bad_private_key_does_not_echo_it():
    with pytest.raises(KeystoreError) as info:
        signer_from_key("0xdeadbeefcafe")
    assert "deadbeefcafe" not in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        KEY[:-1],
        KEY[2:-1],
        KEY + "1",
        KEY[2:] + "0",
        " " + KEY,
        "0x" + "g" * 64,
        KEY[:40] + " " + KEY[41:],
    ],
)
def test_a_private_key_is_exactly_64_hex_digits(bad, caplog):
    # eth-account zero-pads 63 digits into a different, valid key: a lost digit while pasting
    # would import somebody else's (or nobody's) wallet instead of an error.
    caplog.set_level(logging.DEBUG)
    with pytest.raises(KeystoreError, match="exactly 64 hex digits") as info:
        signer_from_key(bad)
    assert info.value.__cause__ is None and info.value.__context__ is None  # nothing to chain
    message = str(info.value)
    assert "1111" not in message and "gggg" not in message and "1111" not in caplog.text


def test_a_private_key_as_bytes_is_exactly_32_bytes():
    assert signer_from_key(bytes.fromhex(KEY[2:])).address == signer_from_key(KEY).address
    assert signer_from_key("0X" + KEY[2:].upper()).address == signer_from_key(KEY).address
    for bad in (bytes(31), b"\x11" * 33, bytes(32), 17):  # bytes(32) is the invalid key zero
        with pytest.raises(KeystoreError, match="exactly 64 hex digits"):
            signer_from_key(bad)


def test_account_import_of_a_63_digit_key_writes_nothing(tmp_path, monkeypatch, capsys):
    from modex.cli import main
    from node import keystore

    monkeypatch.setattr(keystore, "DEFAULT_SCRYPT_N", FAST)
    monkeypatch.setenv("MODEX_PASSWORD", "pw")
    monkeypatch.setenv("MY_KEY", KEY[:-1])
    argv = [
        "account",
        "--data-dir",
        str(tmp_path),
        "--keystore",
        "k.json",
        "import",
        "--private-key-env",
        "MY_KEY",
    ]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "exactly 64 hex digits" in err and len(err.strip().splitlines()) == 1, err
    assert "1111" not in out + err
    assert not (tmp_path / "k.json").exists()


def test_dev_signers_match_the_chains_funded_accounts():
    assert dev_signer("embedded", 0).address == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
    assert dev_signer("anvil", 0).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert dev_signer("anvil", 1).address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    with pytest.raises(ValueError):
        dev_signer("mainnet", 0)


def test_keystore_round_trip_mode_and_no_clear_key(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "sub" / "k.json"
    address = import_private_key(path, KEY, "correct horse", scrypt_n=FAST)
    assert address == signer_from_key(KEY).address
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert "11" * 32 not in text
    assert json.loads(text)["crypto"]["kdf"] == "scrypt"
    assert keystore_address(path) == address
    signer = load_signer(path, "correct horse")
    assert isinstance(signer, LocalSigner) and signer.address == address
    assert not [p for p in path.parent.iterdir() if p.name != "k.json"]  # no temp files left
    assert "11" * 32 not in caplog.text and "correct horse" not in caplog.text


def test_create_keystore_is_random_and_never_overwrites(tmp_path):
    a = create_keystore(tmp_path / "a.json", "pw", scrypt_n=FAST)
    b = create_keystore(tmp_path / "b.json", "pw", scrypt_n=FAST)
    assert a != b
    before = (tmp_path / "a.json").read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        create_keystore(tmp_path / "a.json", "pw", scrypt_n=FAST)
    assert (tmp_path / "a.json").read_bytes() == before
    with pytest.raises(KeystoreError, match="must not be empty"):
        create_keystore(tmp_path / "c.json", "", scrypt_n=FAST)
    assert not (tmp_path / "c.json").exists()


def test_keystore_errors_are_clear(tmp_path):
    path = tmp_path / "k.json"
    create_keystore(path, "right", scrypt_n=FAST)
    with pytest.raises(KeystoreError, match=f"wrong password for keystore {path}"):
        load_signer(path, "wrong")
    with pytest.raises(KeystoreError, match="no keystore at .*modex account new"):
        load_signer(tmp_path / "missing.json", "x")
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(KeystoreError, match="not an encrypted JSON keystore"):
        load_signer(junk, "x")


def test_read_password_from_env_or_refuses_without_terminal(monkeypatch):
    monkeypatch.setenv("MODEX_PASSWORD", "from-env")
    assert read_password() == "from-env"
    monkeypatch.delenv("MODEX_PASSWORD")

    def no_tty(prompt):
        raise EOFError

    monkeypatch.setattr("getpass.getpass", no_tty)
    with pytest.raises(KeystoreError, match="MODEX_PASSWORD"):
        read_password()
    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    with pytest.raises(KeystoreError, match="differ"):
        read_password(confirm=True)


def test_account_commands(tmp_path, monkeypatch, capsys):
    from modex.cli import main
    from node import keystore

    monkeypatch.setattr(keystore, "DEFAULT_SCRYPT_N", FAST)
    monkeypatch.setenv("MODEX_PASSWORD", "pw")
    monkeypatch.setenv("MY_KEY", KEY)
    base = ["account", "--data-dir", str(tmp_path)]
    assert main([*base, "new"]) == 0
    created = capsys.readouterr().out.split()[1]
    assert main([*base, "show", "--balance", "--chain", "embedded"]) == 0
    out = capsys.readouterr().out
    assert f"address {created}" in out and "balance 0 ETH on embedded" in out
    assert main([*base, "new"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (
        main([*base, "--keystore", "imported.json", "import", "--private-key-env", "MY_KEY"]) == 0
    )
    out = capsys.readouterr().out
    assert signer_from_key(KEY).address in out and KEY[2:] not in out
    assert load_signer(tmp_path / "imported.json", "pw").address == signer_from_key(KEY).address
    assert main([*base, "--keystore", "x.json", "import", "--private-key-env", "UNSET_VAR"]) == 1
    assert main([*base, "--keystore", "missing.json", "show"]) == 1
    assert "no keystore at" in capsys.readouterr().err


def test_account_new_or_import_where_no_file_can_be_written_is_one_sentence(
    tmp_path, monkeypatch, capsys
):
    from modex.cli import main
    from node import keystore

    monkeypatch.setattr(keystore, "DEFAULT_SCRYPT_N", FAST)
    monkeypatch.setenv("MODEX_PASSWORD", "pw")
    monkeypatch.setenv("MY_KEY", KEY)
    (tmp_path / "afile").write_text("not a folder")
    for action in (["new"], ["import", "--private-key-env", "MY_KEY"]):
        argv = ["account", "--keystore", str(tmp_path / "afile" / "ks.json"), *action]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "cannot write keystore" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
