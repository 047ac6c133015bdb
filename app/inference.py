"""The node's inference service inside the UI: ml/'s signed endpoint (EIP-712) mounted at
POST /api/inference/v1/infer over the models this node serves, the "Try it" call that signs with
the session's wallet, and the background warm-up that `modex up` starts.

    init_app(app, csrf)   mount the endpoint (only when `modex up` handed in the chain and models)
                          over ml.served.ServedModels: a folder that does not load makes its
                          model unavailable (503, listed so in /v1/models), not the service
    call_inference(...)   sign with the session's wallet and ask the same service (``pay``: add a
                          voucher to the signed request, for a call paid on a payment channel)
    handle_signed(body)   ask it with a body already signed (by a browser wallet, in the page)
    service_states()      how each model this node serves stands (the market's Service column)
    warm_models(app)      start loading the served models in the background (a ModelWarmer)
"""

from __future__ import annotations

import logging
import threading

from flask import current_app

from app.resources import get_chain
from ml.endpoint import InferenceService, Refusal, create_blueprint
from ml.payment import onchain_channel_options, onchain_has_license
from ml.served import ModelUnavailable, ServedModels
from ml.signing import sign_request_as
from node.errors import ModexError
from node.servicestore import open_service_store

log = logging.getLogger(__name__)


def call_inference(signer, model_id: int, inputs: list[str], *, pay=None) -> tuple[int, dict]:
    """Sign an inference request with the session's wallet (EIP-712) and hand it to the service
    (``handle_signed``). ``pay(body) -> body`` adds a voucher to the signed request."""
    chain = get_chain()
    payload = sign_request_as(
        signer,
        model_id=model_id,
        inputs=inputs,
        chain_id=chain.chain_id,
        verifying_contract=chain.marketplace.address,
    )
    if pay is not None:
        payload = pay(payload)
    return handle_signed(payload)


def handle_signed(payload: dict) -> tuple[int, dict]:
    """Hand a signed request body (signed here for a keystore wallet, or in the page by a browser
    wallet) to the same InferenceService that answers POST /api/inference/v1/infer (all its
    checks apply). A refusal answers ``{"error": sentence, "code": ..., **its fields}``
    (409 voucher_stale: acceptedAmount)."""
    service = current_app.extensions.get("modex.inference")
    if service is None:
        return 503, {"error": "This node serves no inference (start it with `modex up`)."}
    try:
        return 200, service.handle(payload)
    except Refusal as refusal:
        return refusal.status, {"error": refusal.message, "code": refusal.code, **refusal.fields}
    except ModexError as exc:
        log.warning("inference for model %s failed: %s", payload.get("modelId"), exc)
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


def service_states() -> dict[int, str]:
    """The state of each model this node serves ("ready", "starting" or "unavailable":
    ServedModels.state), without loading any; {} when the node serves none."""
    service = current_app.extensions.get("modex.inference")
    if service is None:
        return {}
    return {model_id: service.models.state(model_id) for model_id in service.models}


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

    # The state store `modex serve` and the worker's claimer use on this chain by default
    # (Config.service_store_at): the vouchers Try it is paid with are claimed from there.
    config = app.config["MODEX_NODE_CONFIG"]
    store = open_service_store(config.service_store_at(chain.chain_id, chain.marketplace.address))
    app.extensions["modex.service_store"] = store
    service = InferenceService(
        ServedModels(models),
        has_license=onchain_has_license(chain),  # a licence or a live subscription
        chain_id=chain.chain_id,
        verifying_contract=chain.marketplace.address,
        store=store,
        **onchain_channel_options(chain),
    )
    blueprint = create_blueprint(service, name="modex_inference")
    csrf.exempt(blueprint)  # JSON signed by the wallet (EIP-712): the signature authenticates
    app.register_blueprint(blueprint, url_prefix="/api/inference")
    app.extensions["modex.inference"] = service
