"""The node's inference service inside the UI: ml/'s signed endpoint (EIP-712) mounted at
POST /api/inference/v1/infer over the models this node serves, the "Try it" call that signs with
the session's wallet, and the background warm-up that `modex up` starts.

    init_app(app, csrf)   mount the endpoint (only when `modex up` handed in the chain and models)
                          over ml.served.ServedModels: a folder that does not load makes its
                          model unavailable (503, listed so in /v1/models), not the service
    call_inference(...)   sign with the session's wallet and ask the same service
    warm_models(app)      start loading the served models in the background (a ModelWarmer)
"""

from __future__ import annotations

import logging
import threading

from flask import current_app

from app.resources import get_chain
from ml.endpoint import InferenceService, Refusal, create_blueprint
from ml.served import ModelUnavailable, ServedModels
from ml.signing import sign_request_as
from node.errors import ModexError

log = logging.getLogger(__name__)


def call_inference(signer, model_id: int, inputs: list[str]) -> tuple[int, dict]:
    """Sign an inference request with the session's wallet (EIP-712) and hand it to the same
    InferenceService that answers POST /api/inference/v1/infer (all its checks apply)."""
    service = current_app.extensions.get("modex.inference")
    if service is None:
        return 503, {"error": "This node serves no inference (start it with `modex up`)."}
    chain = get_chain()
    payload = sign_request_as(
        signer,
        model_id=model_id,
        inputs=inputs,
        chain_id=chain.chain_id,
        verifying_contract=chain.marketplace.address,
    )
    try:
        return 200, service.handle(payload)
    except Refusal as refusal:
        return refusal.status, {"error": refusal.message}
    except ModexError as exc:
        log.warning("inference for model %s failed: %s", model_id, exc)
        return 500, {"error": str(exc)}


class ModelWarmer:
    """Loads the served models in the background, so the first "Try it" does not wait for it.

    `stop()` asks it to load nothing more and waits for the model in hand: a process that exits
    while a daemon thread is half way through `import torch` prints torch's registration errors
    and a traceback on its way out."""

    def __init__(self, service):
        self._service = service
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._load_all, name="modex-warm-models", daemon=True
        )

    def start(self) -> ModelWarmer:
        self._thread.start()
        return self

    def _load_all(self) -> None:
        for model_id in list(self._service.models):
            if self._stopping.is_set():
                return
            try:
                self._service.models[model_id]
            except ModelUnavailable:  # ServedModels logged why; its calls are answered 503
                continue
            except Exception:  # a model that fails to load is reported when someone calls it
                if not self._stopping.is_set():
                    log.warning("could not preload model %s", model_id, exc_info=True)

    def stop(self, timeout: float = 120.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


def warm_models(app) -> ModelWarmer | None:
    """Start loading the app's served models in the background (None: it serves none)."""
    service = app.extensions.get("modex.inference")
    if service is None:
        return None
    return ModelWarmer(service).start()


def init_app(app, csrf) -> None:
    """Mount the inference endpoint, exempt from ``csrf`` (the app's CSRFProtect)."""
    chain = app.config.get("MODEX_CHAIN")
    models = app.config.get("MODEX_MODELS")
    if chain is None or models is None:
        return  # inference needs the node's chain and model dirs: `modex up` hands both in

    def has_license(model_id: int, address: str) -> bool:
        return bool(chain.call(chain.marketplace.functions.hasLicense(model_id, address)))

    service = InferenceService(
        ServedModels(models),
        has_license=has_license,
        chain_id=chain.chain_id,
        verifying_contract=chain.marketplace.address,
    )
    blueprint = create_blueprint(service, name="modex_inference")
    csrf.exempt(blueprint)  # JSON signed by the wallet (EIP-712): the signature authenticates
    app.register_blueprint(blueprint, url_prefix="/api/inference")
    app.extensions["modex.inference"] = service
