"""The content commands through modex.cli.main: hash, seal/unseal, wrap-key/unwrap-key, derive-key."""

import hashlib
import json

import pytest
from content_helpers import make_model
from eth_account import Account

from modex.cli import main
from node.content.keywrap import derive_x25519, wrap_key
from node.content.manifest import build_manifest

KEY_HEX = "00" * 31 + "01"
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_hash_and_manifest(tmp_path, capsys):
    make_model(tmp_path, {"config.json": b"{}", "w/model.safetensors": b"abc"})
    code, out, _ = run(capsys, "hash", str(tmp_path))
    assert code == 0 and out.strip() == build_manifest(tmp_path).model_hash_hex
    code, out, _ = run(capsys, "hash", str(tmp_path), "--manifest")
    assert code == 0
    assert (
        "0x" + hashlib.sha256(out.encode()).hexdigest() == build_manifest(tmp_path).model_hash_hex
    )
    assert json.loads(out)["version"] == 1
    code, _, _ = run(
        capsys, "hash", str(tmp_path), "--check", build_manifest(tmp_path).model_hash_hex
    )
    assert code == 0
    code, _, err = run(capsys, "hash", str(tmp_path), "--check", "0x" + "00" * 32)
    assert code == 1 and "model hash mismatch" in err


def test_hash_refusal_is_one_readable_line(tmp_path, capsys):
    make_model(tmp_path, {"a": b"1"})
    (tmp_path / "l").symlink_to(tmp_path / "a")
    code, _, err = run(capsys, "hash", str(tmp_path))
    assert code == 1
    assert err.startswith("modex: error: l: symlinks are refused") and "Traceback" not in err


def test_seal_unseal_round_trip_and_wrong_key(tmp_path, capsys):
    src = tmp_path / "plain.tar"
    src.write_bytes(bytes(range(256)) * 50)
    code, _, _ = run(
        capsys, "seal", str(src), str(tmp_path / "s"), "--key-hex", KEY_HEX, "--chunk-size", "1000"
    )
    assert code == 0 and (tmp_path / "s").read_bytes()[:8] == b"MDXSEAL1"
    code, _, _ = run(
        capsys, "unseal", str(tmp_path / "s"), str(tmp_path / "back"), "--key-hex", KEY_HEX
    )
    assert code == 0 and (tmp_path / "back").read_bytes() == src.read_bytes()
    code, _, err = run(
        capsys, "unseal", str(tmp_path / "s"), str(tmp_path / "bad"), "--key-hex", "ff" * 32
    )
    assert code == 1 and "authentication" in err and not (tmp_path / "bad").exists()
    code, _, err = run(
        capsys, "unseal", str(tmp_path / "missing"), str(tmp_path / "x"), "--key-hex", KEY_HEX
    )
    assert code == 1 and "is not a file" in err


@pytest.mark.parametrize("command", ["seal", "unseal"])
def test_an_output_that_cannot_be_written_is_one_sentence(tmp_path, capsys, command):
    src = tmp_path / "in"
    (tmp_path / "in.tar").write_bytes(b"x" * 100)
    assert run(capsys, "seal", str(tmp_path / "in.tar"), str(src), "--key-hex", KEY_HEX)[0] == 0
    folder = tmp_path / "folder"
    folder.mkdir()
    for out, needle in ((folder, "is a folder"), (tmp_path / "no" / "such" / "x", "cannot write")):
        code, _, err = run(capsys, command, str(src), str(out), "--key-hex", KEY_HEX)
        assert code == 1 and needle in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert list(folder.iterdir()) == [] and not (tmp_path / "no").exists()


def test_bad_key_hex_is_a_usage_error_that_does_not_echo_it(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["seal", "a", "b", "--key-hex", "abcd1234"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--key-hex must be 32 bytes as 64 hex chars" in err and "abcd1234" not in err


def test_wrap_unwrap_and_derive_key(tmp_path, capsys, monkeypatch):
    acct = Account.from_key(DEV_KEY)
    secret, public = derive_x25519(acct, 31337)
    monkeypatch.setenv("TEST_WALLET_KEY", DEV_KEY)
    code, out, err = run(
        capsys, "derive-key", "--private-key-env", "TEST_WALLET_KEY", "--chain-id", "31337"
    )
    assert code == 0 and out.split() == [public.hex()] and DEV_KEY[2:] not in out + err
    code, out, err = run(
        capsys,
        "derive-key",
        "--private-key-env",
        "TEST_WALLET_KEY",
        "--chain-id",
        "31337",
        "--secret",
    )
    assert out.split() == [public.hex(), secret.hex()] and "warning" in err

    purchase = ["--chain-id", "31337", "--marketplace", MARKET, "--purchase-id", "9"]
    code, out, _ = run(capsys, "wrap-key", "--to", public.hex(), *purchase, "--key-hex", KEY_HEX)
    wrapped = out.strip()
    assert code == 0 and len(wrapped) == 160
    code, out, _ = run(capsys, "unwrap-key", wrapped, "--secret-hex", secret.hex(), *purchase)
    assert code == 0 and out.strip() == KEY_HEX
    other = ["--chain-id", "31337", "--marketplace", MARKET, "--purchase-id", "10"]
    code, _, err = run(capsys, "unwrap-key", wrapped, "--secret-hex", secret.hex(), *other)
    assert code == 1 and "cannot unwrap" in err
    # What the library wraps, the command unwraps.
    lib = wrap_key(
        public, bytes.fromhex(KEY_HEX), chain_id=31337, marketplace=MARKET, purchase_id=9
    )
    code, out, _ = run(capsys, "unwrap-key", lib.hex(), "--secret-hex", secret.hex(), *purchase)
    assert out.strip() == KEY_HEX


def test_derive_key_from_keystore(tmp_path, capsys, monkeypatch):
    keyfile = Account.encrypt(DEV_KEY, "correct horse battery", kdf="scrypt", iterations=2**10)
    path = tmp_path / "wallet.json"
    path.write_text(json.dumps(keyfile))
    monkeypatch.setenv("MODEX_PASSWORD", "correct horse battery")
    code, out, _ = run(capsys, "derive-key", "--keystore", str(path), "--chain-id", "5")
    assert code == 0 and out.strip() == derive_x25519(Account.from_key(DEV_KEY), 5)[1].hex()
    monkeypatch.setenv("MODEX_PASSWORD", "wrong password!")
    code, _, err = run(capsys, "derive-key", "--keystore", str(path), "--chain-id", "5")
    assert code == 1 and "wrong password" in err


def test_derive_key_missing_env(capsys, monkeypatch):
    monkeypatch.delenv("NO_SUCH_VAR_MODEX", raising=False)
    code, _, err = run(
        capsys, "derive-key", "--private-key-env", "NO_SUCH_VAR_MODEX", "--chain-id", "1"
    )
    assert code == 1 and "NO_SUCH_VAR_MODEX is not set" in err


@pytest.mark.parametrize(
    "command", ["hash", "seal", "unseal", "wrap-key", "unwrap-key", "derive-key"]
)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: modex " + command in capsys.readouterr().out
