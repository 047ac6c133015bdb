"""The validator with the real evaluator: a tiny model trained by ml/, published with its declared
eval set and the claim of its evaluation report, re-evaluated by `modex validate`, and the
revealed work digest equal to the seller's claim and to the one ml/evaluate.py computes: the model
is Verified. Plus: node/ never imports ml/ (or torch) at import time.
"""

from __future__ import annotations

import json

import pytest
from cli_results import ok
from modex_stack import make_stack, validate_to_the_end

from node.onchain import work_digest
from node.protocol import EVALUATION_REPORT, FAILED_WORK_DIGEST, ModelStatus
from tests.ml.conftest import TINY  # the ML tests' 3-step fine-tune: fast, not accurate
from tests.scripts import run_python


def published_id(out: str) -> int:
    return int(
        dict(line.split(None, 1) for line in out.splitlines() if not line.startswith("warning"))[
            "model_id"
        ]
    )


@pytest.mark.slow
def test_validator_reveals_the_digest_of_the_real_evaluation_and_the_claim_verifies(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from ml.evaluate import evaluation_report
    from ml.train import train

    model = tmp_path / "trained"
    train({"output_dir": str(model), **TINY})
    declared = json.loads((model / "metrics.json").read_text())
    assert declared["eval_set"] == TINY["eval_set"]
    claim = work_digest(json.loads((model / EVALUATION_REPORT).read_text()))

    stack = make_stack("embedded", tmp_path / "stack", delivery_window=3600)
    out = ok(stack.cli("seller", "publish", str(model), "--price", "0.01", "--name", "tiny"))
    model_id = published_id(out)
    assert f"work_digest   0x{claim.hex()}" in out  # what training's evaluation found, claimed
    meta = json.loads(
        stack.store()
        .get(stack.chain.call(stack.chain.registry.functions.metadataCid(model_id)))
        .read()
    )
    assert meta["metrics"] == declared  # the listing declares its eval set and metrics

    out = validate_to_the_end(stack, model_id)
    expected = work_digest(evaluation_report(model, TINY["eval_set"]))  # what ml/ computes here
    assert expected == claim  # and what the seller claimed (the same evaluation, reproduced)
    assert f"work digest 0x{expected.hex()}" in out and "(matches)" in out
    assert f"model {model_id}: settled verified" in out
    attested = stack.chain.events("Attested", modelId=model_id)
    assert len(attested) == 1
    args = attested[0]["args"]
    assert bytes(args["workDigest"]) == expected and args["matches"]
    assert bytes(args["observedHash"]) == bytes(
        stack.chain.call(stack.chain.registry.functions.modelHash(model_id))
    )
    assert (
        stack.chain.call(stack.chain.validators.functions.status(model_id)) == ModelStatus.VERIFIED
    )


def test_a_declared_eval_set_the_validator_cannot_run_is_revealed_with_the_failure_digest(tmp_path):
    """Hash matched, the failure digest revealed, the reason printed; the validator is not stuck
    on it, and the model is not Verified."""
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    (model / "metrics.json").write_text(json.dumps({"eval_set": "no-such-eval-set-v9"}))
    model_id = published_id(
        ok(stack.cli("seller", "publish", str(model), "--price", "0.01", "--name", "x"))
    )
    out = validate_to_the_end(stack, model_id)
    assert "(matches)" in out and "no-such-eval-set-v9" in out and "failed" in out
    args = stack.chain.events("Attested", modelId=model_id)[-1]["args"]
    assert args["matches"] and bytes(args["workDigest"]) == FAILED_WORK_DIGEST
    assert f"model {model_id}: settled metrics disputed" in out


def test_node_imports_neither_ml_nor_torch():
    """Every node module loads without ml/, torch or transformers; building the `modex` parser
    loads no torch or transformers (the `modex train` options come from ml.train, which E keeps
    free of torch at import time); the evaluator imports them only when it runs."""
    script = (
        "import importlib, pkgutil, sys\n"
        "import node\n"
        "heavy = lambda roots: sorted(n for n in sys.modules if n.split('.')[0] in roots)\n"
        "for m in pkgutil.walk_packages(node.__path__, 'node.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('modules', heavy(('ml', 'torch', 'transformers')))\n"
        "from modex import cli\n"
        "try:\n"
        "    cli.main(['validate', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('parser', heavy(('torch', 'transformers')))\n"
    )
    proc = run_python("-c", script, timeout=120)
    assert "modules []" in proc.stdout and "parser []" in proc.stdout, proc.stdout[-2000:]
    assert "--until-settled" in proc.stdout
