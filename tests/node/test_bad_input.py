"""Bad input ends in one clear sentence, exit code ≠ 0, no traceback — and nothing half-written.

Listings with tampered content are made the way a dishonest seller would: a sealed archive is
altered (or crafted) and listed with a real delivered key, so the buyer's fetch meets it.
"""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
from modex_stack import PASSWORD, buy_raw, make_stack, publish_model, settle_validation, write_model
from web3.logs import DISCARD

from modex.cli import main
from node.content import seal
from node.content.manifest import build_manifest
from node.fetch import load_metadata
from node.onchain import canonical_json
from node.protocol import ModelStatus, Purchase, PurchaseStatus
from node.worker import KeyDelivery

PRICE = 10**16


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return make_stack("embedded", tmp_path_factory.mktemp("bad"), delivery_window=3600)


@pytest.fixture(scope="module")
def listed(stack):
    """An honest listing: (model id, its folder, its content key, its sealed bytes, metadata)."""
    folder = write_model(stack.root / "honest", size=3 * 4096, seed=7)
    model_id = publish_model(stack, folder, price=PRICE)
    meta = load_metadata(
        stack.store(), stack.chain.call(stack.chain.registry.functions.metadataCid(model_id))
    )
    key = stack.vault().get(meta["content_cid"]).key
    sealed = stack.store().get(meta["content_cid"]).read()
    return model_id, folder, key, sealed, meta


def fails(result, *needles):
    code, out, err = result
    assert code != 0, f"expected a failure\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def list_tampered(
    stack, meta: dict, ciphertext: bytes, key: bytes, *, model_hash: str | None = None
) -> int:
    """List ``ciphertext`` as a new model whose delivered key is ``key``; return its id."""
    store, vault, chain = stack.store(), stack.vault(), stack.chain
    cid = store.put(io.BytesIO(ciphertext))
    store.pin(cid)
    model_hash = model_hash or meta["model_hash"]
    meta = {**meta, "content_cid": cid, "model_hash": model_hash}
    meta_cid = store.put(io.BytesIO(canonical_json(meta)))
    store.pin(meta_cid)
    vault.put(cid, key, model_hash=model_hash)
    receipt = chain.transact(
        chain.registry.functions.list(bytes.fromhex(model_hash[2:]), meta_cid, PRICE),
        stack.signers["seller"],
    )
    model_id = chain.registry.events.ModelListed().process_receipt(receipt, errors=DISCARD)[0][
        "args"
    ]["modelId"]
    vault.assign(cid, chain_id=chain.chain_id, model_id=model_id, registry=chain.registry.address)
    return model_id


def buy_and_fetch(stack, model_id: int, out) -> tuple[int, str, str]:
    buy_raw(stack, "buyer", model_id)
    report = KeyDelivery(
        stack.chain, stack.signers["seller"], stack.vault(), stack.root / f"worker-{model_id}.json"
    ).poll()
    assert report.delivered, report.skipped
    return stack.cli("buyer", "fetch", str(model_id), "--out", str(out))


def sealed_tar(build, key: bytes) -> bytes:
    """Seal a tar written by ``build(tarfile)`` (a crafted, hostile archive)."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        build(tar)
    out = io.BytesIO()
    seal.seal_stream(key, io.BytesIO(plain.getvalue()), out)
    return out.getvalue()


def add_file(tar, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def reseal(sealed: bytes, key: bytes) -> bytes:
    """The same plaintext sealed under a key nobody will deliver."""
    plain, out = io.BytesIO(), io.BytesIO()
    seal.unseal_stream(key, io.BytesIO(sealed), plain)
    seal.seal_stream(os.urandom(32), io.BytesIO(plain.getvalue()), out)
    return out.getvalue()


TAMPERING = {
    "corrupted ciphertext block": (lambda s, k: (flip(s, len(s) // 2), k), "fails authentication"),
    "wrong key": (lambda s, k: (reseal(s, k), os.urandom(32)), "wrong key"),
    "truncated archive": (lambda s, k: (s[: len(s) - 100], k), "sealed archive"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampered_content_is_refused_and_nothing_is_written(stack, listed, case, tmp_path):
    _, _, key, sealed, meta = listed
    tamper, needle = TAMPERING[case]
    ciphertext, delivered_key = tamper(sealed, key)
    model_id = list_tampered(stack, meta, ciphertext, delivered_key)
    out = tmp_path / "out"
    fails(buy_and_fetch(stack, model_id, out), needle)
    assert list(tmp_path.iterdir()) == []  # no OUT, no temp folder left beside it


def test_manifest_mismatch_is_refused(stack, listed, tmp_path):
    _, _, key, sealed, meta = listed
    model_id = list_tampered(stack, meta, sealed, key, model_hash="0x" + "ab" * 32)
    fails(buy_and_fetch(stack, model_id, tmp_path / "out"), "model hash mismatch")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("entry", ["traversal", "symlink", "absolute"])
def test_hostile_tar_entries_are_refused(stack, listed, entry, tmp_path):
    _, _, _, _, meta = listed
    key = os.urandom(32)

    def build(tar):
        add_file(tar, "config.json", b"{}")
        if entry == "traversal":
            add_file(tar, "../escaped.txt", b"owned")
        elif entry == "absolute":
            add_file(tar, "/tmp/escaped.txt", b"owned")
        else:
            link = tarfile.TarInfo("model.safetensors")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)

    model_id = list_tampered(stack, meta, sealed_tar(build, key), key)
    err = fails(buy_and_fetch(stack, model_id, tmp_path / "out"))
    assert "escaped" in err or "symlink" in err.lower() or "link" in err.lower() or ".." in err
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_publish_refuses_pickles_and_symlinks_and_lists_nothing(stack, tmp_path):
    count = stack.chain.call(stack.chain.registry.functions.modelCount())
    pickled = write_model(tmp_path / "pickled")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    fails(
        stack.cli("seller", "publish", str(pickled), "--price", "0.01"),
        "pytorch_model.bin",
        "safetensors",
    )
    linked = write_model(tmp_path / "linked")
    (linked / "weights.safetensors").symlink_to("/etc/passwd")
    fails(stack.cli("seller", "publish", str(linked), "--price", "0.01"), "weights.safetensors")
    assert stack.chain.call(stack.chain.registry.functions.modelCount()) == count


def test_wrong_password_unknown_model_max_price_and_funds(stack, listed, tmp_path, monkeypatch):
    model_id = listed[0]
    code, out, err = stack.cli("buyer", "buy", "999", "--wait", "0")
    fails((code, out, err), "model 999 is not listed")
    fails(
        stack.cli("buyer", "buy", str(model_id), "--max-price", "0.001", "--wait", "0"),
        "above your --max-price",
    )
    # A fresh wallet with no ETH.
    from node.keystore import create_keystore

    empty = tmp_path / "empty.json"
    create_keystore(empty, PASSWORD, scrypt_n=2**10)
    code, out, err = stack.cli(
        "buyer", "buy", str(model_id), "--wait", "0", "--keystore", str(empty)
    )
    fails((code, out, err), "insufficient funds")
    # Wrong keystore password.
    env = stack.env
    monkeypatch.setattr(stack, "env", lambda: {**env(), "MODEX_PASSWORD": "not it"})
    fails(stack.cli("buyer", "buy", str(model_id), "--wait", "0"), "wrong password for keystore")


def test_wrong_chain_id_in_the_deployment_file(stack, tmp_path, monkeypatch):
    record = json.loads(stack.deployment.read_text())
    record["chainId"] = 1
    wrong = tmp_path / "1.json"
    wrong.write_text(json.dumps(record))
    monkeypatch.setattr(stack, "deployment", wrong)
    fails(stack.cli("buyer", "withdraw"), "is for chain 1 but the node")


def test_fetch_without_a_delivered_key_says_what_to_do(stack, listed, tmp_path):
    model_id = publish_model(stack, write_model(tmp_path / "undelivered", seed=3), price=PRICE)
    buy_raw(stack, "buyer2", model_id)
    fails(
        stack.cli("buyer2", "fetch", str(model_id), "--out", str(tmp_path / "o")),
        "has not been delivered yet",
        "modex refund",
    )
    fails(
        stack.cli("validator", "fetch", str(model_id), "--out", str(tmp_path / "o")),
        "has not bought model",
    )
    assert build_manifest(listed[1])  # the honest folder is untouched by all of the above


def test_a_disputed_models_pending_purchase_is_refunded_from_the_cli_at_once(
    stack, listed, tmp_path
):
    """Validators dispute the model while a purchase waits for its key: `modex fetch` says the key will
    never come and to refund now, and `modex refund` succeeds before the delivery window closes."""
    chain = stack.chain
    model_id = publish_model(stack, write_model(tmp_path / "disputed", seed=5), price=PRICE)
    pid = buy_raw(stack, "buyer2", model_id)
    assert (
        settle_validation(
            chain,
            model_id,
            owner=stack.signers["seller"],
            validator=stack.signers["validator"],
            outcome=ModelStatus.DISPUTED,
        )
        == ModelStatus.DISPUTED
    )  # quorum 1
    err = fails(
        stack.cli("buyer2", "fetch", str(model_id), "--out", str(tmp_path / "o")),
        f"validators disputed model {model_id}",
        f"modex refund {pid}` now",
    )
    assert "has not been delivered yet" not in err
    purchase = chain.marketplace.functions.purchase(pid)
    deadline = Purchase.from_call(chain.call(purchase)).deadline
    assert chain.w3.eth.get_block("latest")["timestamp"] < deadline  # the window is still open
    credited = chain.marketplace.functions.credited(stack.signers["buyer2"].address)
    before = chain.call(credited)
    code, out, err = stack.cli("buyer2", "refund", str(pid))
    assert code == 0, err
    assert f"purchase {pid} refunded" in out
    assert Purchase.from_call(chain.call(purchase)).status == PurchaseStatus.REFUNDED
    assert chain.call(credited) == before + PRICE  # the whole price back
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["buy", "-1"],
        ["vote", "-1", "3"],
        ["refund", "-1"],
        ["fetch", "-1", "--out", "o"],
        ["fetch", "1", "--purchase", "-1", "--out", "o"],
    ],
)
def test_a_negative_id_is_a_usage_error_not_a_traceback(stack, listed, argv, capsys, monkeypatch):
    from modex.cli import main

    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        main([*argv, *stack.args("buyer")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "must be a whole number, 1 or more" in err, err


def test_fetch_into_a_folder_that_cannot_be_made_is_one_sentence(stack, tmp_path):
    model_id = publish_model(stack, write_model(stack.root / "unwritable", seed=11), price=PRICE)
    (tmp_path / "afile").write_text("not a folder")
    fails(
        buy_and_fetch(stack, model_id, tmp_path / "afile" / "out"),
        "cannot write",
        "choose another --out",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    # A local folder problem is not a content problem: the validator attests content errors
    # (these classes) as unreadable, so this one must be none of them.
    from node.errors import IntegrityError, KeyWrapError, ManifestError, ModexError, SealError
    from node.fetch import retrieve

    with pytest.raises(ModexError) as exc:
        retrieve(stack.store(), "bafkqaaa", b"k" * 32, tmp_path / "afile" / "work", prefix="m")
    assert not isinstance(exc.value, (KeyWrapError, SealError, IntegrityError, ManifestError))


@pytest.mark.parametrize(
    "argv",
    [
        ["worker", "--interval", "-1"],
        ["worker", "--interval", "nan"],
        ["validate", "--interval", "-0.5"],
        ["worker", "--interval", "inf"],
    ],
)
def test_a_poll_interval_that_is_not_a_positive_number_is_a_usage_error(argv, capsys):
    """A negative interval made the worker (or validator) poll the chain in a busy loop."""
    from modex.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "a number of seconds more than 0" in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ["cid", "{missing}"],
        ["store", "put", "{missing}", "--root", "{root}"],
        ["store", "import-car", "{missing}", "--root", "{root}"],
    ],
)
def test_a_file_that_cannot_be_read_is_one_sentence_from_the_one_handler(argv, tmp_path, capsys):
    """The commands raise InputError; modex.cli.main prints it once, as every ModexError."""
    missing = tmp_path / "missing.car"
    code = main([a.format(missing=missing, root=tmp_path / "store") for a in argv])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err == f"modex: error: cannot read {missing}: No such file or directory\n"
