"""The fast paths of the end-to-end journey keep the formats and the safety checks.

- ``write_tar_hashing`` (publish reads each file once) writes the same bytes as ``write_tar``
  and returns the same manifest as ``build_manifest``; a file that changed size is refused.
- ``node.evmgas`` (two executions per eth_estimateGas on the embedded chain) never answers
  below what the transaction needs, and stays within 64/63 + a stipend of py-evm's exact figure.
"""

from __future__ import annotations

import io

import pytest
from eth.estimators.gas import binary_gas_search_exact
from modex_stack import make_stack, publish_model, write_model

from node.content.manifest import build_manifest, scan_dir
from node.content.tarball import listing_tar_size, write_tar, write_tar_hashing
from node.errors import IntegrityError


def test_hashing_tar_is_the_same_tar_and_the_same_manifest(tmp_path):
    model = write_model(tmp_path / "m", size=3 * 2**20 + 5)
    (model / "sub").mkdir()
    (model / "sub" / "empty.txt").write_bytes(b"")
    (model / ("long-" + "x" * 120 + ".json")).write_text("{}")
    manifest = build_manifest(model)
    plain = io.BytesIO()
    write_tar(model, manifest, plain)
    listing = scan_dir(model)
    hashed = io.BytesIO()
    written, got = write_tar_hashing(model, listing, hashed)
    assert hashed.getvalue() == plain.getvalue()
    assert written == len(plain.getvalue()) == listing_tar_size(listing)
    assert got == manifest and got.model_hash == manifest.model_hash


def test_hashing_tar_refuses_a_file_that_changed_size(tmp_path):
    model = write_model(tmp_path / "m", size=1000)
    listing = scan_dir(model)
    (model / "model.safetensors").write_bytes(b"\1" * 1001)
    with pytest.raises(IntegrityError, match="changed since"):
        write_tar_hashing(model, listing, io.BytesIO())


def test_embedded_gas_estimates_are_enough_and_close_to_exact(tmp_path):
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model_id = publish_model(stack, write_model(tmp_path / "m"))
    chain, buyer = stack.chain, stack.signers["buyer"].address
    price = chain.call(chain.registry.functions.price(model_id))
    fn = chain.marketplace.functions.buy(model_id, b"\x09" * 32, price)
    params = {"from": buyer, "value": price}
    evm_chain = chain.w3.provider.ethereum_tester.backend.chain
    fast = fn.estimate_gas(params)
    saved = evm_chain.gas_estimator
    evm_chain.gas_estimator = binary_gas_search_exact
    try:
        exact = fn.estimate_gas(params)
    finally:
        evm_chain.gas_estimator = saved
    assert exact <= fast <= exact + exact // 63 + 2_300
    receipt = chain.transact_unlocked(fn, buyer, value=price, gas=fast)  # enough, as sent
    assert receipt["status"] == 1
