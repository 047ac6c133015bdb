"""The seller's key vault: encrypted at rest, mode 0600, atomic, keys never in logs."""

import json
import logging
import multiprocessing
import os
import stat

import pytest

from node.errors import KeystoreError
from node.keyvault import KeyVault

FAST = {"n": 2**10, "r": 8, "p": 1}  # cheap scrypt for tests; the default is in the file


def vault(path, passphrase="correct horse"):
    return KeyVault(path, passphrase, scrypt_params=FAST)


def test_round_trip_and_model_assignment(tmp_path):
    path = tmp_path / "keys.vault"
    key = os.urandom(32)
    v = vault(path)
    assert v.get("bafyone") is None
    v.put("bafyone", key, model_hash="0x" + "11" * 32)
    v.assign(
        "bafyone", chain_id=31337, model_id=7, registry="0xAbC0000000000000000000000000000000000001"
    )

    again = vault(path)  # a new process would see the same
    entry = again.for_model(31337, 7)
    assert entry.key == key and entry.content_cid == "bafyone"
    assert entry.model_hash == "0x" + "11" * 32
    assert again.for_model(31337, 8) is None
    assert again.for_model(1, 7) is None
    assert again.for_model(31337, 7, "0xabc0000000000000000000000000000000000001").key == key
    assert again.for_model(31337, 7, "0x0000000000000000000000000000000000000002") is None
    assert [e.content_cid for e in again.entries()] == ["bafyone"]


def test_a_listing_names_one_key(tmp_path):
    """A chain that went back past a listing (a local chain restarted from an older save) gives
    its id to the next listing: the new key takes the id, the old one is kept unassigned (else
    the worker could deliver the old model's key for the new one)."""
    v = vault(tmp_path / "keys.vault")
    old, new = os.urandom(32), os.urandom(32)
    registry = "0xAbC0000000000000000000000000000000000001"
    v.put("bafyold", old, model_hash="0x" + "11" * 32)
    v.assign("bafyold", chain_id=31337, model_id=2, registry=registry)
    v.put("bafynew", new, model_hash="0x" + "22" * 32)
    v.assign("bafynew", chain_id=31337, model_id=2, registry=registry)
    assert v.for_model(31337, 2, registry).key == new
    kept = v.get("bafyold")
    assert kept.key == old and (kept.chain_id, kept.model_id, kept.registry) == (None, None, None)
    v.assign("bafyold", chain_id=1, model_id=2, registry=registry)  # another chain: both stand
    assert v.for_model(1, 2).key == old and v.for_model(31337, 2).key == new


def test_a_new_version_takes_the_listing_without_a_warning(tmp_path, caplog):
    """Publishing a new version moves the listing to its key by design: said as such (info), not
    as a chain that went back (a warning); the older version's key stays in the vault."""
    v = vault(tmp_path / "keys.vault")
    registry = "0xAbC0000000000000000000000000000000000001"
    v.put("bafyv1", os.urandom(32), model_hash="0x" + "11" * 32)
    v.assign("bafyv1", chain_id=31337, model_id=2, registry=registry)
    v.put("bafyv2", os.urandom(32), model_hash="0x" + "22" * 32)
    with caplog.at_level(logging.INFO, logger="node.keyvault"):
        v.assign("bafyv2", chain_id=31337, model_id=2, registry=registry, new_version=True)
    assert v.for_model(31337, 2, registry).content_cid == "bafyv2"
    assert v.get("bafyv1") is not None
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "bafyv1" in r.getMessage()]
    assert said == [
        (
            logging.INFO,
            "model 2 on chain 31337: its latest version is bafyv2; the key of the older version "
            "bafyv1 stays in the vault",
        )
    ]


def test_file_is_private_and_holds_no_clear_key(tmp_path):
    path = tmp_path / "keys.vault"
    key = os.urandom(32)
    vault(path).put("bafyone", key, model_hash="0x00")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert key.hex().encode() not in raw and key not in raw
    assert b"bafyone" not in raw  # the entries (even their CIDs) are encrypted
    doc = json.loads(raw)
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["n"] == FAST["n"]
    # No temp file is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.vault", "keys.vault.lock"]


def test_wrong_passphrase_is_refused(tmp_path):
    path = tmp_path / "keys.vault"
    vault(path).put("bafyone", os.urandom(32), model_hash="0x00")
    with pytest.raises(KeystoreError, match="wrong passphrase for key vault"):
        vault(path, "wrong").get("bafyone")
    with pytest.raises(KeystoreError, match="needs a passphrase"):
        KeyVault(path, "")


def test_tampered_parameters_or_ciphertext_are_refused(tmp_path):
    path = tmp_path / "keys.vault"
    vault(path).put("bafyone", os.urandom(32), model_hash="0x00")
    doc = json.loads(path.read_bytes())
    doc["kdf"]["p"] = 2  # swapping the parameters changes the AAD (and the key)
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="wrong passphrase|altered"):
        vault(path).get("bafyone")
    path.write_text("not json")
    with pytest.raises(KeystoreError, match="not a Modex key vault"):
        vault(path).get("bafyone")


def test_a_cid_is_never_rebound_to_another_key(tmp_path):
    v = vault(tmp_path / "keys.vault")
    key = os.urandom(32)
    v.put("bafyone", key, model_hash="0x00")
    v.put("bafyone", key, model_hash="0x00")  # idempotent retry is fine
    with pytest.raises(KeystoreError, match="different key"):
        v.put("bafyone", os.urandom(32), model_hash="0x00")
    with pytest.raises(KeystoreError, match="32 bytes"):
        v.put("bafytwo", b"short", model_hash="0x00")
    with pytest.raises(KeystoreError, match="holds no key"):
        v.assign("bafythree", chain_id=1, model_id=1)


def test_keys_never_reach_the_log(tmp_path, caplog):
    key = os.urandom(32)
    with caplog.at_level(logging.DEBUG):
        v = vault(tmp_path / "keys.vault")
        v.put("bafyone", key, model_hash="0x00")
        entry = v.get("bafyone")
        logging.getLogger("test").info("entry %r vault %r", entry, v)
    assert key.hex() not in caplog.text and "hidden" in caplog.text


def _writer(path, prefix, count):
    v = KeyVault(path, "pw", scrypt_params=FAST)
    for i in range(count):
        v.put(f"{prefix}{i}", bytes([i]) * 32, model_hash="0x00")


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "keys.vault"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, p, 8)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    cids = {e.content_cid for e in KeyVault(path, "pw").entries()}
    assert cids == {f"{p}{i}" for p in "ab" for i in range(8)}


@pytest.mark.parametrize("write", ["keystore", "vault"])
def test_a_new_key_file_is_durable_its_folder_entry_fsynced(tmp_path, monkeypatch, write):
    """A wallet keystore or vault that is renamed/linked into place but whose folder is not
    fsync'd can vanish on a power cut after the command said it was written: the key is lost."""
    from node.keystore import create_keystore

    synced_dirs = []
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced_dirs.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    if write == "keystore":
        create_keystore(tmp_path / "ks.json", "pw", scrypt_n=2**4)
    else:
        KeyVault(tmp_path / "v.json", "pw", scrypt_params=FAST).put(
            "cid", b"k" * 32, model_hash="0x00"
        )
    assert str(tmp_path.resolve()) in synced_dirs


def test_a_vault_path_that_cannot_be_used_is_one_sentence(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "adir").mkdir()
    for path in (tmp_path / "afile" / "v.json", tmp_path / "adir"):
        v = vault(path)
        with pytest.raises(KeystoreError, match="key vault") as exc:
            v.put("cid", b"k" * 32, model_hash="0x00")
        assert str(path) in str(exc.value)
        with pytest.raises(KeystoreError, match="key vault"):
            v.entries()
