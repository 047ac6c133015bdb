"""The ONNX Runtime backend (ml/onnxrt.py) against the torch path, and its cache of exports."""

import os
import shutil

import pytest

from ml import data, onnxrt
from ml.serve import Predictor
from node.errors import ConfigError
from tests.ml.test_serve import LONG


@pytest.fixture(scope="module")
def model_dir(tiny_model, tmp_path_factory):
    """A copy of the tiny model in a folder of this module's own, so its exports sit beside it."""
    folder = tmp_path_factory.mktemp("onnx") / "model"
    shutil.copytree(tiny_model[0], folder)
    return folder


@pytest.fixture(scope="module")
def texts():
    return [ex.text for ex in data.split("test")[:40]] + [LONG, "ok", "meh."]


@pytest.fixture(scope="module")
def onnx_fp32(model_dir):
    return Predictor(model_dir, dtype="fp32", max_length=32, backend="onnx")


def test_onnx_fp32_gives_the_torch_labels_and_scores(model_dir, onnx_fp32, texts):
    import torch

    torch_fp32 = Predictor(model_dir, dtype="fp32", max_length=32)
    assert (onnx_fp32.backend, onnx_fp32.packed, torch_fp32.backend) == ("onnx", False, "torch")
    ids, truncated = torch_fp32.encode(texts)
    assert any(truncated) and len({len(x) for x in ids}) > 10  # padded batches of many lengths
    with torch.inference_mode():
        want = torch_fp32.forward(ids)
    got = onnx_fp32.forward(ids)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-4), (got - want).abs()
    for a, b in zip(onnx_fp32.predict(texts), torch_fp32.predict(texts), strict=True):
        assert a["label"] == b["label"] and a["truncated"] == b["truncated"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)


def test_onnx_answers_do_not_depend_on_padding(onnx_fp32, texts):
    alone = [onnx_fp32.predict([t])[0] for t in texts]
    for a, b in zip(onnx_fp32.predict(texts), alone, strict=True):
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_onnx_int8_stays_close_to_fp32(model_dir, onnx_fp32, texts):
    int8 = Predictor(model_dir, max_length=32, backend="onnx")  # CPU default dtype: int8
    assert int8.dtype == "int8" and int8.forward.path.endswith("-int8.onnx")
    ref, out = onnx_fp32.predict(texts), int8.predict(texts)
    assert max(abs(a["score"] - b["score"]) for a, b in zip(ref, out, strict=True)) < 0.05
    # labels may flip only where fp32 itself hesitates (the tiny model's classes are close)
    flipped = [a["score"] for a, b in zip(ref, out, strict=True) if a["label"] != b["label"]]
    assert len(flipped) <= 6 and all(s < 0.5 for s in flipped), flipped


def test_exports_are_cached_beside_the_model_and_redone_when_it_changes(model_dir, onnx_fp32):
    folder = onnxrt.cache_dir(model_dir)
    assert folder == model_dir.parent / "model.onnx"
    assert not list(model_dir.glob("*.onnx"))  # nothing inside: the folder's files are its hash
    key = onnxrt.cache_key(model_dir)
    fp32 = folder / f"{key}-fp32.onnx"
    assert onnx_fp32.forward.path == str(fp32)
    before = fp32.stat().st_mtime_ns
    (folder / f"{key}-int8.12345.partial.onnx").write_bytes(b"half an export")  # a killed one
    again = Predictor(model_dir, dtype="fp32", max_length=32, backend="onnx")
    assert again.forward.path == str(fp32) and fp32.stat().st_mtime_ns == before  # reused
    assert not list(folder.glob("*.partial.onnx"))

    changed = model_dir.parent / "changed"
    shutil.copytree(model_dir, changed)
    shutil.copytree(folder, onnxrt.cache_dir(changed))
    (changed / "notes.txt").write_text("a new file changes the model hash")
    new_key = onnxrt.cache_key(changed)
    assert new_key != key
    Predictor(changed, dtype="fp32", max_length=32, backend="onnx")
    names = sorted(p.name for p in onnxrt.cache_dir(changed).glob("*.onnx"))
    assert names == [f"{new_key}-fp32.onnx"]  # exported anew; the old model's files removed


def test_onnx_backend_refuses_what_it_cannot_run(model_dir, tmp_path):
    with pytest.raises(ConfigError, match="backend must be one of"):
        Predictor(model_dir, backend="tensorrt")
    for settings in ({"dtype": "bf16"}, {"packed": True}):
        with pytest.raises(ConfigError, match="use --backend torch"):
            Predictor(model_dir, backend="onnx", **settings)


def test_a_folder_it_cannot_write_beside_says_what_to_do(model_dir, tmp_path):
    if os.geteuid() == 0:  # root writes anywhere: a file in the cache folder's place instead
        blocked = tmp_path / "m"
        shutil.copytree(model_dir, blocked)
        onnxrt.cache_dir(blocked).write_text("not a folder")
    else:
        parent = tmp_path / "ro"
        blocked = parent / "m"
        shutil.copytree(model_dir, blocked)
        parent.chmod(0o500)
    with pytest.raises(ConfigError, match="cannot write the ONNX export beside the model"):
        Predictor(blocked, dtype="fp32", max_length=32, backend="onnx")


def test_texts_run_in_groups_of_about_one_length():
    lengths = [3, 3, 4, 10, 11, 12, 40, 41, 90]
    runs = list(onnxrt._runs(lengths))
    assert [k for run in runs for k in run] == list(range(len(lengths)))
    for run in runs:
        real = sum(lengths[k] for k in run)
        assert len(run) * lengths[run[-1]] <= (1 + onnxrt.PADDING) * real
    assert len(runs) < len(lengths)  # texts of one length still share a session call


def test_modex_serve_offers_the_backend_flag(capsys):
    from modex.cli import main as modex

    with pytest.raises(SystemExit) as exited:
        modex(["serve", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--backend {torch,onnx}" in text and "(default: torch, which served faster here)" in text
