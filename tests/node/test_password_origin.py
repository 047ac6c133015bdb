"""A wrong password on the command line says where it came from ($MODEX_PASSWORD, the prompt,
$MODEX_VAULT_PASSWORD for the key vault) and what to do (issue 16 §5)."""

from __future__ import annotations

import getpass

import pytest
from modex_stack import FAST_VAULT, PASSWORD, make_stack, write_model

from node.keyvault import KeyVault

VAULT_ENV, PASSWORD_ENV = "MODEX_VAULT_PASSWORD", "MODEX_PASSWORD"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return make_stack("embedded", tmp_path_factory.mktemp("passwords"))


def run_with(stack, monkeypatch, role: str, argv: list[str], **env: str) -> str:
    """``modex ARGV`` as ``role`` with these password variables only; returns stderr (exit 1)."""
    for name in (VAULT_ENV, PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)
    base = stack.env
    passwords = {k: v for k, v in env.items() if k in (VAULT_ENV, PASSWORD_ENV)}

    def env_without_passwords() -> dict:
        kept = {k: v for k, v in base().items() if k not in (VAULT_ENV, PASSWORD_ENV)}
        return {**kept, **passwords}

    monkeypatch.setattr(stack, "env", env_without_passwords)
    code, out, err = stack.cli(role, *argv)
    assert code == 1 and "Traceback" not in out + err, (code, out, err)
    return err


def test_a_wrong_password_from_the_environment_says_so(stack, monkeypatch):
    err = run_with(stack, monkeypatch, "buyer", ["vote", "1", "5"], MODEX_PASSWORD="not it")
    keystore = stack.config("buyer").keystore
    assert f"wrong password for keystore {keystore}" in err
    assert "the password came from $MODEX_PASSWORD" in err
    assert "set MODEX_PASSWORD to its password, or unset it to type it at a prompt" in err


def test_a_wrong_password_typed_at_the_prompt_says_so(stack, monkeypatch):
    prompts = []
    monkeypatch.setattr(getpass, "getpass", lambda prompt: prompts.append(prompt) or "not it")
    err = run_with(stack, monkeypatch, "buyer", ["vote", "1", "5"])
    assert prompts == ["Keystore password: "]
    assert "the password came from the prompt" in err and "$MODEX_PASSWORD" not in err
    assert "run the command again and type its password there (or set MODEX_PASSWORD)" in err


def test_a_wrong_key_vault_passphrase_names_its_variable(stack, monkeypatch):
    KeyVault(stack.config("seller").keyvault, PASSWORD, scrypt_params=FAST_VAULT).put(
        "bafy-held", b"k" * 32, model_hash="0x" + "00" * 32
    )
    model = write_model(stack.root / "model")
    publish = ["publish", str(model), "--price", "0.01"]
    err = run_with(
        stack, monkeypatch, "seller", publish, MODEX_PASSWORD=PASSWORD, MODEX_VAULT_PASSWORD="no"
    )
    assert f"wrong password for key vault {stack.config('seller').keyvault}" in err
    assert "the password came from $MODEX_VAULT_PASSWORD" in err
    assert "set MODEX_VAULT_PASSWORD to the key vault's passphrase, or unset it" in err

    # Without $MODEX_VAULT_PASSWORD the vault takes the wallet's password: a vault with a
    # passphrase of its own is refused with the variable that would open it.
    KeyVault(stack.config("validator").keyvault, "its own", scrypt_params=FAST_VAULT).put(
        "bafy-held", b"k" * 32, model_hash="0x" + "00" * 32
    )
    err = run_with(stack, monkeypatch, "validator", publish, MODEX_PASSWORD=PASSWORD)
    assert "wrong password for key vault" in err
    assert "the password came from $MODEX_PASSWORD" in err
    assert "without $MODEX_VAULT_PASSWORD the key vault takes the wallet's password" in err
    count = stack.chain.call(stack.chain.registry.functions.modelCount())
    assert count == 0  # refused before anything was listed
