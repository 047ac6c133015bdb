"""GET /v1/health runs a real inference (issue 14 §4): peers' heartbeats said "Online" for a
wedged service. The canary goes through each model's batcher and Predictor, as calls do; the
faults are injected at the model-call boundary (Predictor.forward) of real tiny models."""

import shutil
import threading

import pytest

from app import create_app as create_ui_app
from ml.endpoint import InferenceService, create_app
from ml.serve import DynamicBatcher, Predictor
from node.config import load_config
from tests.ml.test_endpoint import CHAIN_ID, MARKET, refused, signed
from tests.ml.test_serve_unavailable import Chain, licences_for_all

HEALTHY, WEDGED, FAILING, PLAIN_WEDGED = 7, 8, 9, 10


class Forward:
    """Wraps a Predictor's forward: counts the calls, and blocks until released or raises."""

    def __init__(self, predictor, *, block=None, fail=None):
        self.inner, self.block, self.fail, self.calls = predictor.forward, block, fail, 0
        predictor.forward = self

    def __call__(self, ids):
        self.calls += 1
        if self.block is not None:
            self.block.wait(30)
        if self.fail is not None:
            raise self.fail
        return self.inner(ids)


@pytest.fixture
def release():
    event = threading.Event()
    yield event
    event.set()  # the wedged forwards return: their threads end


@pytest.fixture
def served(tiny_model, release):
    """model id -> (served model, its Forward): healthy, wedged, raising (behind batchers) and a
    wedged plain Predictor (no batcher)."""
    faults = {
        HEALTHY: {},
        WEDGED: {"block": release},
        FAILING: {"fail": RuntimeError("CUDA error: device-side assert at /srv/models/8")},
        PLAIN_WEDGED: {"block": release},
    }
    models, forwards = {}, {}
    for model_id, fault in faults.items():
        predictor = Predictor(tiny_model[0], max_length=32)
        forwards[model_id] = Forward(predictor, **fault)
        models[model_id] = (
            predictor if model_id == PLAIN_WEDGED else DynamicBatcher(predictor, max_wait_ms=1)
        )
    yield models, forwards
    release.set()
    for model in models.values():
        if isinstance(model, DynamicBatcher):
            model.close()


def service_over(models, **options):
    return InferenceService(
        models,
        has_license=licences_for_all,
        chain_id=CHAIN_ID,
        verifying_contract=MARKET,
        **{"health_timeout": 0.5, **options},
    )


def test_health_reports_the_wedged_and_failing_models_and_the_healthy_one_ok(served):
    models, forwards = served
    client = create_app(service_over(models)).test_client()
    r = client.get("/v1/health")
    assert r.status_code == 503 and r.json["status"] == "failing"
    report = r.json["models"]
    assert report[str(HEALTHY)]["status"] == "ok"
    assert 0 < report[str(HEALTHY)]["latency_ms"] < 10_000
    assert forwards[HEALTHY].calls == 1  # a real inference through the model
    for model_id in (WEDGED, PLAIN_WEDGED):
        assert report[str(model_id)] == {
            "status": "timeout",
            "reason": "no answer to the health check within 0.5 s",
        }
    assert report[str(FAILING)]["status"] == "failing"
    assert "RuntimeError" in report[str(FAILING)]["reason"]
    text = r.get_data(as_text=True)
    assert "/srv" not in text and "CUDA" not in text
    message = r.json["error"]["message"]
    assert r.json["error"]["code"] == "unhealthy"
    assert f"model {WEDGED}: no answer" in message and f"model {FAILING}: " in message
    assert f"model {HEALTHY}:" not in message
    # the healthy model is still served to paying callers while the other one is wedged
    assert client.post("/v1/infer", json=signed(model_id=HEALTHY)).status_code == 200


def test_health_of_one_chosen_model(served):
    models, forwards = served
    client = create_app(service_over(models)).test_client()
    r = client.get(f"/v1/health?model={HEALTHY}")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert r.json["status"] == "ok" and list(r.json["models"]) == [str(HEALTHY)]
    assert r.json["models"][str(HEALTHY)]["status"] == "ok" and "error" not in r.json
    assert forwards[WEDGED].calls == 0
    assert client.get(f"/v1/health?model={WEDGED}").status_code == 503
    refused(client.get("/v1/health?model=5"), 404, "unknown_model")
    refused(client.get("/v1/health?model=seven"), 400, "bad_request")


def test_callers_within_health_ttl_share_one_check(served):
    models, forwards = served
    healthy = {HEALTHY: models[HEALTHY]}
    client = create_app(service_over(healthy, health_ttl=60)).test_client()
    assert client.get("/v1/health").json == client.get("/v1/health").json
    assert forwards[HEALTHY].calls == 1  # a flood of health checks is not a flood of inferences
    client = create_app(service_over(healthy, health_ttl=0)).test_client()
    client.get("/v1/health")
    client.get("/v1/health")
    assert forwards[HEALTHY].calls == 3


def test_the_ui_mount_runs_the_canary_and_reports_a_folder_that_does_not_load(tiny_model, tmp_path):
    broken = shutil.copytree(tiny_model[0], tmp_path / "seller" / "model")
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    folders = {HEALTHY: tiny_model[0], WEDGED: broken}
    settings = {"TESTING": True, "MODEX_CHAIN": Chain(), "MODEX_MODELS": folders}
    app = create_ui_app({**settings, "MODEX_NODE_CONFIG": load_config(data_dir=str(tmp_path))})
    client = app.test_client()
    r = client.get("/api/inference/v1/health")
    assert r.status_code == 503, r.json
    assert r.json["models"][str(HEALTHY)]["status"] == "ok"
    assert r.json["models"][str(WEDGED)]["status"] == "unavailable"
    assert r.json["models"][str(WEDGED)]["reason"].startswith("the model's weights could not")
    assert str(tmp_path) not in r.get_data(as_text=True)
    r = client.get(f"/api/inference/v1/health?model={HEALTHY}")
    assert r.status_code == 200 and r.json["status"] == "ok"
