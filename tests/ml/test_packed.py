"""The padding-free forward (ml/packed.py) against the transformers forward it replaces."""

import pytest

from ml import data, packed
from node.errors import ConfigError


@pytest.fixture(scope="module")
def base():
    """The packaged base model with a fresh 3-way head (seeded), and its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(7)
    model = AutoModelForSequenceClassification.from_pretrained(
        data.base_model_dir(), num_labels=3, local_files_only=True, use_safetensors=True
    )
    return model, AutoTokenizer.from_pretrained(data.base_model_dir(), local_files_only=True)


@pytest.fixture(scope="module")
def texts():
    """Texts of very different lengths (one over the 64-token limit), so padding matters."""
    rows = [ex.text for ex in data.split("validation")[:7]]
    return rows + ["ok", "this phone is great but the battery broke " * 12]


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_logits_and_gradients_equal_the_padded_transformers_forward(base, texts):
    import torch
    import torch.nn.functional as F

    model, tokenizer = base
    model.eval()  # dropout off: both forwards are deterministic
    labels = torch.tensor([i % 3 for i in range(len(texts))])
    enc = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    ids = tokenizer(texts, truncation=True, max_length=64)["input_ids"]
    assert len({len(x) for x in ids}) > 3 and max(map(len, ids)) == 64

    model.zero_grad()
    ref = model(**enc).logits
    F.cross_entropy(ref, labels).backward()
    ref_grads = _grads(model)
    model.zero_grad()
    got = packed.logits(model, ids)
    F.cross_entropy(got, labels).backward()
    got_grads = _grads(model)

    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()
    # every trained parameter gets a gradient, the same one (float rounding aside)
    assert set(got_grads) == set(ref_grads)
    assert len(ref_grads) == len([p for p in model.parameters() if p.requires_grad])
    for name, grad in ref_grads.items():
        assert torch.allclose(got_grads[name], grad, atol=1e-6, rtol=1e-4), name
    model.zero_grad()


def test_train_mode_applies_dropout_and_eval_mode_does_not(base, texts):
    import torch

    model, tokenizer = base
    ids = tokenizer(texts, truncation=True, max_length=64)["input_ids"]
    model.eval()
    with torch.no_grad():
        assert torch.equal(packed.logits(model, ids), packed.logits(model, ids))
        model.train()
        try:
            torch.manual_seed(1)
            first = packed.logits(model, ids)
            second = packed.logits(model, ids)
            torch.manual_seed(1)
            again = packed.logits(model, ids)
        finally:
            model.eval()
    assert not torch.allclose(first, second)  # fresh dropout masks each call
    assert torch.equal(first, again)  # from the same seed, the same masks


def test_pack_lays_texts_back_to_back():
    p = packed.pack([[101, 5, 102], [101, 102], [101, 7, 8, 9, 102]], "cpu")
    assert p.flat.tolist() == [101, 5, 102, 101, 102, 101, 7, 8, 9, 102]
    assert p.positions.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3, 4]
    assert p.starts.tolist() == [0, 3, 5]
    assert p.spans == [(0, 3), (3, 2), (5, 5)]
    with pytest.raises(ConfigError, match="no empty token list"):
        packed.pack([[101, 102], []], "cpu")


def test_other_architectures_are_refused_with_what_to_do(base):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    other = DistilBertForSequenceClassification(
        DistilBertConfig(n_layers=1, dim=32, hidden_dim=64, n_heads=2, vocab_size=100)
    )
    assert packed.supports(base[0]) and not packed.supports(other)
    with pytest.raises(
        ConfigError, match="not DistilBertForSequenceClassification; train or serve"
    ):
        packed.logits(other, [[1, 2]])
