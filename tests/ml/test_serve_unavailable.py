"""One bad model never takes the service down (issue 14 §4).

A seller's folder that does not load (a config that is not JSON, weights that are not
safetensors) beside a good model: GET /v1/models still answers 200 and lists it as unavailable
with a reason that names no server path, its calls are refused with 503 model_unavailable, the
good model keeps answering, and once the folder is fixed the model is served again. Through the
standalone endpoint `modex serve` runs (ml.endpoint.create_app) and through the UI's mount
(/api/inference, app.inference).
"""

import shutil
from types import SimpleNamespace

import pytest

from app import create_app as create_ui_app
from ml.endpoint import InferenceService, create_app
from ml.serve import ModelLoadError, Predictor
from ml.served import ModelUnavailable, ServedModels
from node.config import load_config
from tests.ml.test_endpoint import BUYER, CHAIN_ID, MARKET, refused, signed

GOOD, BAD_CONFIG, BAD_WEIGHTS = 7, 8, 9


@pytest.fixture
def folders(tiny_model, tmp_path):
    """model id -> folder: the tiny model, and two copies a seller broke."""
    good = tiny_model[0]
    bad_config = shutil.copytree(good, tmp_path / "seller-a" / "model")
    (bad_config / "config.json").write_text("{ this is not json")
    bad_weights = shutil.copytree(good, tmp_path / "seller-b" / "model")
    (bad_weights / "model.safetensors").write_bytes(b"\x00" * 64)
    return {GOOD: good, BAD_CONFIG: bad_config, BAD_WEIGHTS: bad_weights}


def assert_names_no_path(text, tmp_path, tiny_model):
    for path in (tmp_path, tiny_model[0]):
        assert str(path) not in text and str(path.resolve()) not in text, text
    assert "/tmp" not in text and "seller-" not in text, text


def test_a_folder_that_does_not_load_names_no_path_in_its_reason(folders, tmp_path, tiny_model):
    for model_id, part in ((BAD_CONFIG, "config"), (BAD_WEIGHTS, "weights")):
        with pytest.raises(ModelLoadError) as caught:
            Predictor(folders[model_id])
        assert str(folders[model_id]) in str(caught.value)  # the operator's message names it
        assert caught.value.reason.startswith(f"the model's {part} could not be ")
        assert_names_no_path(caught.value.reason, tmp_path, tiny_model)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError) as caught:
        Predictor(empty)
    assert caught.value.reason == "the model folder has no config.json"


def check_service(client, prefix, folders, tmp_path, tiny_model):
    """What a caller sees of a service holding the good model and the two broken ones."""
    r = client.get(f"{prefix}/v1/models")
    assert r.status_code == 200, r.get_data(as_text=True)
    listed = {m["modelId"]: m for m in r.json["models"]}
    assert listed[GOOD]["status"] == "available" and len(listed[GOOD]["labels"]) == 3
    assert listed[BAD_CONFIG]["reason"].startswith("the model's config could not be read: ")
    assert listed[BAD_WEIGHTS]["reason"].startswith("the model's weights could not be loaded: ")
    for model_id in (BAD_CONFIG, BAD_WEIGHTS):
        assert listed[model_id]["status"] == "unavailable" and listed[model_id]["labels"] == []
        body = signed(model_id=model_id)
        r = client.post(f"{prefix}/v1/infer", json=body)
        message = refused(r, 503, "model_unavailable")
        assert listed[model_id]["reason"] in message and r.headers["Retry-After"]
        assert_names_no_path(r.get_data(as_text=True), tmp_path, tiny_model)
    assert_names_no_path(
        client.get(f"{prefix}/v1/models").get_data(as_text=True), tmp_path, tiny_model
    )
    r = client.post(f"{prefix}/v1/infer", json=signed(model_id=GOOD))
    assert r.status_code == 200 and r.json["outputs"][0]["label"] in listed[GOOD]["labels"]


def licences_for_all(model_id, address):
    return address == BUYER.address


def test_the_standalone_endpoint_lists_a_bad_model_and_serves_the_others(
    folders, tmp_path, tiny_model
):
    dirs = dict(folders)
    service = InferenceService(
        ServedModels(dirs),
        has_license=licences_for_all,
        chain_id=CHAIN_ID,
        verifying_contract=MARKET,
    )
    client = create_app(service).test_client()
    check_service(client, "", folders, tmp_path, tiny_model)
    # the same signed request is refused while the folder is broken, served once it is fixed
    body = signed(model_id=BAD_WEIGHTS)
    refused(client.post("/v1/infer", json=body), 503, "model_unavailable")
    shutil.copy(tiny_model[0] / "model.safetensors", folders[BAD_WEIGHTS] / "model.safetensors")
    assert client.post("/v1/infer", json=body).status_code == 200
    listed = {m["modelId"]: m for m in client.get("/v1/models").json["models"]}
    assert listed[BAD_WEIGHTS]["status"] == "available"


def test_a_failure_is_remembered_until_the_folder_changes(folders):
    loads = []

    def load(folder):
        loads.append(folder)
        return Predictor(folder)

    served = ServedModels(folders, load=load)
    assert served.state(BAD_CONFIG) == "starting"  # asking loads nothing
    assert loads == []
    for _ in range(3):
        with pytest.raises(ModelUnavailable, match="the model's config could not be read"):
            served[BAD_CONFIG]
    assert len(loads) == 1  # not read from disk again on every call
    assert served.state(BAD_CONFIG) == "unavailable"
    shutil.copy(folders[GOOD] / "config.json", folders[BAD_CONFIG] / "config.json")
    assert served[BAD_CONFIG].labels == served[GOOD].labels and len(loads) == 3
    assert served[BAD_CONFIG] is served[BAD_CONFIG] and len(loads) == 3  # loaded once
    assert served.state(BAD_CONFIG) == "ready"
    retried = ServedModels(folders, load=load, retry_after=0)  # a failure older than this: retry
    for expected in (4, 5):
        with pytest.raises(ModelUnavailable, match="the model's weights could not be loaded"):
            retried[BAD_WEIGHTS]
        assert len(loads) == expected


class Chain:
    """What app.inference reads of node.chain.Chain: its id, the marketplace's address and ABI,
    hasLicense through call(), and its contracts (no Channels: the service takes no vouchers);
    BUYER holds a licence for every model."""

    chain_id = CHAIN_ID
    contracts: dict = {}

    def __init__(self):
        functions = SimpleNamespace(hasLicense=lambda model_id, address: (model_id, address))
        abi = [{"type": "function", "name": "hasLicense"}]
        self.marketplace = SimpleNamespace(address=MARKET, functions=functions, abi=abi)

    def call(self, fn):
        return licences_for_all(*fn)


def test_the_ui_mount_lists_a_bad_model_and_serves_the_others(folders, tmp_path, tiny_model):
    """Was: GET /api/inference/v1/models answered 500 to everyone, naming the folder."""
    settings = {"TESTING": True, "MODEX_CHAIN": Chain(), "MODEX_MODELS": folders}
    app = create_ui_app({**settings, "MODEX_NODE_CONFIG": load_config(data_dir=str(tmp_path))})
    check_service(app.test_client(), "/api/inference", folders, tmp_path, tiny_model)
