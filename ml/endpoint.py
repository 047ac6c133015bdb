"""The paid inference endpoint: EIP-712-signed requests, paid (ml/payment.py), answered in batches.

    service = InferenceService({1: batcher}, has_license=onchain_has_license(chain),
                               chain_id=31337, verifying_contract=marketplace_address,
                               store=open_service_store(path), channels=onchain_channel_book(...),
                               channels_address=..., free_calls={1: 5})
    app = create_app(service)                                   # standalone
    flask_app.register_blueprint(create_blueprint(service), url_prefix="/inference")  # mounted

Routes: ``POST /v1/infer`` (body and signature: see ml/signing.py), ``GET /v1/models`` (each
model with ``"status": "available"`` or ``"unavailable"`` and the path-free ``reason``), and
``GET /v1/health[?model=ID]``: a real inference of CANARY on each served model (or that one),
through the same batcher calls use, each bounded by ``health_timeout``; 200 ``{"status": "ok",
"models": {id: {"status": "ok", "latency_ms"}}}``, or 503 with ``"status": "failing"``, the
failing models' ``status`` (unavailable, timeout, failing, busy) and ``reason``, and an
``error``. Answers are shared for ``health_ttl`` seconds, so callers cannot pile up inferences.
A mounted blueprint takes JSON signed by the wallet, not a form: exempt it from CSRF
(``csrf.exempt(blueprint)``); the signature is its authentication.

Checks, in order, each answered with ``{"error": {"code", "message"}}`` and this status (the
full table, with the payment answers of ml/payment.py, is in docs/inference-api.md):
  413 body_too_large; 400 malformed_json / bad_request / empty_input; 413 input_too_long /
  too_many_inputs (token-level over-length is truncated, not refused); 404 unknown_model;
  401 expired / bad_signature / signer_mismatch; then the payment (ml/payment.py: a voucher,
  a licence or subscription, a free call; 402/403/409 say how to pay); 409 replayed (this
  signer's nonce was used); 503 queue_full / model_unavailable, 504 timeout, 500
  inference_failed: nothing was served, so the nonce (except after a timeout) and the payment
  are given back.
On success: 200 ``{"modelId", "signer", "outputs": [{"label", "score", "truncated"}],
"warnings": [...], "paidWith": {"kind", ...}}`` with a warning for every truncated input.

``has_license(model_id, address) -> bool`` is injected (the node passes onchain_has_license:
Marketplace.hasAccess, a licence or live subscription); answers are cached for ``license_ttl``
seconds (refusals for ``negative_ttl``, so a fresh purchase is seen quickly).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Blueprint, Flask, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from ml import signing
from ml.payment import (  # noqa: F401 - onchain_has_license: modex serve imports it from here
    ChannelBook,
    LicenseCache,
    Paid,
    Payments,
    Refused,
    Voucher,
    onchain_has_license,
)
from ml.serve import InvalidInput, QueueFull
from ml.served import ModelUnavailable
from node.errors import ModexError
from node.servicestore import ServiceStore, open_service_store

log = logging.getLogger(__name__)

MAX_INPUTS = 64
MAX_CHARS = 20_000
MAX_DEADLINE_AHEAD = 3600
MAX_BODY_BYTES = 2 * 1024 * 1024
UINT256_MAX = 2**256 - 1
# The input /v1/health sends through each model: short, ordinary text every classifier reads.
CANARY = "The service answered this health check."


class Refusal(Refused):
    """An inference request answered with other than 200: the HTTP status, a stable code and a
    sentence for a person (what to send instead), and ``fields`` added to the error object;
    raised by InferenceService.handle (a payment refusal of ml/payment.py turned into one) and
    the blueprint, turned into the JSON error answer there."""

    @classmethod
    def of(cls, refused: Refused) -> Refusal:
        """The answer to a refusal of ml/payment.py."""
        return cls(
            refused.status,
            refused.code,
            refused.message,
            retry_after=refused.retry_after,
            fields=refused.fields,
        )


def _uint(body: dict, name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or value is None:
        raise Refusal(400, "bad_request", f"field {name!r} is missing; send it as an integer")
    try:
        number = int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise Refusal(
            400,
            "bad_request",
            f"field {name!r} must be an integer or a decimal/0x string, not {value!r}",
        ) from None
    if isinstance(value, float) and value != number or not 0 <= number <= UINT256_MAX:
        raise Refusal(400, "bad_request", f"field {name!r} must be a uint256, not {value!r}")
    return number


def _voucher(body: dict) -> Voucher | None:
    """The voucher a request pays with (channelId, cumulativeAmount, voucherSignature), or None
    when it carries none; Refusal when it carries part of one."""
    names = ("channelId", "cumulativeAmount", "voucherSignature")
    given = [name for name in names if body.get(name) is not None]
    if not given:
        return None
    if len(given) < len(names):
        missing = ", ".join(n for n in names if n not in given)
        raise Refusal(
            400,
            "bad_request",
            f"a voucher needs channelId, cumulativeAmount and voucherSignature; {missing} missing",
        )
    signature = body["voucherSignature"]
    try:
        raw = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 65:
        raise Refusal(
            400, "bad_request", "field 'voucherSignature' must be a 65-byte signature in 0x hex"
        )
    return Voucher(_uint(body, "channelId"), _uint(body, "cumulativeAmount"), raw)


class InferenceService:
    """The checks and the answer, independent of Flask (the blueprint is a thin wrapper)."""

    def __init__(
        self,
        models,
        *,
        has_license,
        chain_id: int,
        verifying_contract: str,
        store: ServiceStore | None = None,
        channels: ChannelBook | None = None,
        channels_address: str | None = None,
        free_calls: dict[int, int] | None = None,
        license_ttl: float = 30.0,
        negative_ttl: float = 5.0,
        clock=time.time,
        max_inputs: int = MAX_INPUTS,
        max_chars: int = MAX_CHARS,
        max_deadline_ahead: int = MAX_DEADLINE_AHEAD,
        result_timeout: float = 60.0,
        health_timeout: float = 10.0,
        health_ttl: float = 2.0,
        crash=None,
    ):
        """``has_license(model_id, address)``: a licence or live subscription (onchain_has_license);
        ``store``: the ServiceStore (node/servicestore) of used nonces, vouchers and free calls
        (default: in this process's memory); ``channels`` and ``channels_address``: the Channels
        contract vouchers pay on (None: no vouchers); ``free_calls``: model id -> free calls per
        address. ``crash(point)`` (tests): called at "after_accept" (paid: a voucher stored, the
        model not run) and "before_answer" (the model answered, the answer not sent)."""
        self.crash = crash or (lambda point: None)
        self.models = models
        self.has_license = LicenseCache(has_license, ttl=license_ttl, negative_ttl=negative_ttl)
        self.chain_id = int(chain_id)
        self.verifying_contract = verifying_contract
        self.store = store if store is not None else open_service_store(":memory:", clock=clock)
        self.payments = Payments(
            has_access=self.has_license,
            store=self.store,
            channels=channels,
            chain_id=self.chain_id,
            channels_address=channels_address,
            free_calls=free_calls,
            clock=clock,
        )
        self.clock = clock
        self.max_inputs = max_inputs
        self.max_chars = max_chars
        self.max_deadline_ahead = max_deadline_ahead
        self.result_timeout = result_timeout
        self.health_timeout = health_timeout
        self.health_ttl = health_ttl
        self._health_lock = threading.Lock()
        self._health_answers: dict[tuple, tuple[float, int, dict]] = {}

    def _inputs(self, body: dict) -> list[str]:
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise Refusal(400, "bad_request", "field 'inputs' must be a non-empty list of texts")
        if len(inputs) > self.max_inputs:
            raise Refusal(
                413,
                "too_many_inputs",
                f"{len(inputs)} inputs; send at most {self.max_inputs} per request",
            )
        for i, text in enumerate(inputs):
            if not isinstance(text, str):
                raise Refusal(400, "bad_request", f"input {i} must be a string")
            if not text.strip():
                raise Refusal(400, "empty_input", f"input {i} is empty; send non-empty text")
            if len(text) > self.max_chars:
                raise Refusal(
                    413,
                    "input_too_long",
                    f"input {i} has {len(text)} characters; the limit is "
                    f"{self.max_chars} (longer token sequences are truncated anyway)",
                )
        return inputs

    def handle(self, body) -> dict:
        """The 200 answer for a request body, or Refusal."""
        if not isinstance(body, dict):
            raise Refusal(
                400,
                "malformed_json",
                "send a JSON object (Content-Type: "
                "application/json) with modelId, inputs, nonce, deadline, signature",
            )
        inputs = self._inputs(body)
        model_id, nonce, deadline = (
            _uint(body, "modelId"),
            _uint(body, "nonce"),
            _uint(body, "deadline"),
        )
        signature = body.get("signature")
        if not isinstance(signature, str) or not signature:
            raise Refusal(400, "bad_request", "field 'signature' (0x hex) is missing")
        # Membership only: the model is loaded (ServedModels loads on first use) after the
        # signature, licence and nonce checks, so an unsigned request never costs a load.
        if model_id not in self.models:
            served = ", ".join(str(k) for k in sorted(self.models)) or "none"
            raise Refusal(
                404, "unknown_model", f"model {model_id} is not served here (served: {served})"
            )
        self._check_deadline(deadline)
        signer = self._signer_of(body, signature, model_id, inputs, nonce, deadline)
        try:
            paid = self.payments.check(model_id, signer, _voucher(body))
        except Refused as refused:
            raise Refusal.of(refused) from None
        if not self.store.use_nonce(signer, nonce, deadline):
            raise Refusal(
                409,
                "replayed",
                f"nonce {nonce} was already used by {signer}; sign a "
                "new request with a fresh nonce",
            )
        try:
            self.payments.take(paid)  # durable (a voucher stored) before the model runs
        except Refused as refused:
            self.store.release_nonce(signer, nonce)
            raise Refusal.of(refused) from None
        except BaseException:
            self.store.release_nonce(signer, nonce)
            raise
        self.crash("after_accept")
        outputs = self._serve(model_id, inputs, signer, nonce, paid)
        self.crash("before_answer")
        warnings = [
            f"input {i} was longer than the model's limit and was truncated"
            for i, out in enumerate(outputs)
            if out.get("truncated")
        ]
        answer = {"modelId": model_id, "signer": signer, "outputs": outputs, "warnings": warnings}
        return answer | {"paidWith": paid.summary()}

    def _check_deadline(self, deadline: int) -> None:
        """Refuses a request past its deadline or signed too far ahead."""
        now = self.clock()
        if deadline < now:
            raise Refusal(
                401,
                "expired",
                f"the request expired at {deadline} (now {int(now)}); "
                "sign a new one with a later deadline",
            )
        if deadline > now + self.max_deadline_ahead:
            raise Refusal(
                400,
                "bad_request",
                f"deadline is more than {self.max_deadline_ahead} s "
                "ahead; sign with a nearer deadline",
            )

    def _signer_of(self, body, signature, model_id, inputs, nonce, deadline) -> str:
        """The address that signed the request, refused when unreadable or not the claimed one."""
        try:
            signer = signing.recover_signer(
                chain_id=self.chain_id,
                verifying_contract=self.verifying_contract,
                model_id=model_id,
                inputs=inputs,
                nonce=nonce,
                deadline=deadline,
                signature=signature,
            )
        except Exception as exc:  # noqa: BLE001 - eth-account raises many types for bad signatures
            raise Refusal(
                401,
                "bad_signature",
                f"the signature cannot be read ({exc}); sign the "
                "EIP-712 InferenceRequest with your wallet",
            ) from None
        claimed = body.get("signer")
        if claimed is not None and (
            not isinstance(claimed, str) or claimed.lower() != signer.lower()
        ):
            raise Refusal(
                401,
                "signer_mismatch",
                f"the signature is not by {claimed}: the "
                "request was changed after signing, or signed for another chain or "
                "marketplace",
            )
        return signer

    def _serve(self, model_id: int, inputs, signer: str, nonce: int, paid: Paid) -> list:
        """The model's outputs; when nothing was served the nonce is given back (except after a
        timeout: the model may still answer it) and so is the payment (ml/payment.py)."""
        try:
            outputs = self._run(self.models[model_id], inputs)
        except QueueFull as exc:
            self._unserved(signer, nonce, paid)  # the same signed request may retry
            raise Refusal(503, "queue_full", str(exc), retry_after=1) from None
        except InvalidInput as exc:
            self._unserved(signer, None, paid)
            raise Refusal(400, "bad_request", str(exc)) from None
        except FutureTimeout:
            self._unserved(signer, None, paid)
            raise Refusal(
                504, "timeout", f"the model did not answer in time; {paid.retry_words('later')}"
            ) from None
        except ModelUnavailable as exc:  # its folder does not load; the other models answer
            self._unserved(signer, nonce, paid)
            raise Refusal(
                503,
                "model_unavailable",
                f"{str(exc).rstrip('.')}. The seller must publish a folder that loads; retry later",
                retry_after=60,
            ) from None
        except ModexError:  # another failure of ours: the blueprint says so (500)
            self._unserved(signer, nonce, paid)
            raise
        except Exception:  # noqa: BLE001 - a fault in the model (torch...): JSON, not a 500 page
            log.exception("inference on model %s failed", model_id)
            self._unserved(signer, nonce, paid)
            raise Refusal(
                500,
                "inference_failed",
                "the model failed on this request; the details are in the server log. Nothing "
                f"was used up: {paid.retry_words('again')}",
            ) from None
        return outputs

    def _unserved(self, signer: str, nonce: int | None, paid: Paid) -> None:
        """Give back what a call that was not served used: its nonce (unless None) and payment."""
        if nonce is not None:
            self.store.release_nonce(signer, nonce)
        self.payments.give_back(paid)

    def _run(self, model, inputs):
        return _start(model, inputs).result(self.result_timeout)

    def describe(self) -> list[dict]:
        """Each served model with its labels, or as unavailable with the reason."""
        described = []
        for mid in sorted(self.models):
            try:
                labels = list(getattr(self.models[mid], "labels", []))
            except ModelUnavailable as exc:
                described.append(
                    {"modelId": mid, "labels": [], "status": "unavailable", "reason": exc.reason}
                )
            else:
                described.append(
                    {"modelId": mid, "labels": labels, "status": "available"}
                    | self.payments.offer(mid)
                )
        return described

    def model_id(self, value: str) -> int:
        """A served model's id from a query parameter, or Refusal (400, 404)."""
        try:
            model_id = int(value)
        except ValueError:
            raise Refusal(400, "bad_request", f"model must be a model id, not {value!r}") from None
        if model_id not in self.models:
            raise Refusal(404, "unknown_model", f"model {model_id} is not served here")
        return model_id

    def health(self, model_ids=None) -> tuple[int, dict]:
        """(status, body) of GET /v1/health: the canary through each model (all when None)."""
        key = tuple(sorted(self.models) if model_ids is None else model_ids)
        with self._health_lock:  # one check at a time; callers within health_ttl share it
            answered = self._health_answers.get(key)
            if answered and time.monotonic() - answered[0] < self.health_ttl:
                return answered[1], answered[2]
            report = _canary(self.models, key, self.health_timeout)
            failing = {mid: r for mid, r in report.items() if r["status"] != "ok"}
            body: dict = {"status": "failing" if failing else "ok", "models": report}
            if failing:
                body["error"] = {
                    "code": "unhealthy",
                    "message": "; ".join(f"model {m}: {r['reason']}" for m, r in failing.items()),
                }
            status = 503 if failing else 200
            self._health_answers = {key: (time.monotonic(), status, body)}
        return status, body


def _canary(models, model_ids, timeout: float) -> dict:
    """model id -> {"status": "ok", "latency_ms"} or {"status", "reason"} (path-free): the
    canary through each of ``models``' ``model_ids``, each bounded by ``timeout`` seconds."""
    report: dict = {}
    running: dict = {}
    for mid in model_ids:  # all started first: the models answer in parallel
        started = time.monotonic()
        try:
            future = _start(models[mid], [CANARY])
        except ModelUnavailable as exc:
            report[mid] = {"status": "unavailable", "reason": exc.reason}
        except QueueFull:
            report[mid] = {"status": "busy", "reason": "its inference queue is full"}
        except Exception as exc:  # noqa: BLE001 - reported, never raised into the route
            report[mid] = _failed_canary(mid, exc)
        else:
            finished: list[float] = []
            future.add_done_callback(lambda _, f=finished: f.append(time.monotonic()))
            running[mid] = (future, started, finished)
    deadline = time.monotonic() + timeout
    for mid, (future, started, finished) in running.items():
        try:
            future.result(max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            future.cancel()  # still queued: skipped by the batcher, never run
            report[mid] = {
                "status": "timeout",
                "reason": f"no answer to the health check within {timeout:g} s",
            }
        except Exception as exc:  # noqa: BLE001 - the model failed on the canary
            report[mid] = _failed_canary(mid, exc)
        else:
            report[mid] = {
                "status": "ok",
                "latency_ms": round((finished[0] - started) * 1000, 1),
            }
    return {str(mid): report[mid] for mid in model_ids}


def _failed_canary(model_id, exc: Exception) -> dict:
    log.error("model %s failed its health check", model_id, exc_info=exc)
    return {
        "status": "failing",
        "reason": f"the model failed on the health check ({type(exc).__name__}); "
        "the details are in the server log",
    }


def _start(model, inputs) -> Future:
    """The model's answer to ``inputs`` as a Future: a DynamicBatcher's own, or a plain
    predictor's run on a thread of its own (so that the caller's timeout holds for it too)."""
    if hasattr(model, "submit"):  # a DynamicBatcher
        return model.submit(inputs)
    future: Future = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(model.predict(inputs))
            except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)

    threading.Thread(target=run, name="modex-predict", daemon=True).start()
    return future


def _refusal_response(refusal: Refusal):
    response = jsonify(
        {"error": {"code": refusal.code, "message": refusal.message, **refusal.fields}}
    )
    response.status_code = refusal.status
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response


def create_blueprint(service: InferenceService, name: str = "inference") -> Blueprint:
    bp = Blueprint(name, __name__)

    @bp.post("/v1/infer")
    def infer():
        try:
            if (request.content_length or 0) > MAX_BODY_BYTES:
                raise Refusal(413, "body_too_large", f"request body over {MAX_BODY_BYTES} bytes")
            # A chunked body has no Content-Length: bound what is read, not only what is declared
            # (mounted in the UI app, the app's own limit is the 512 MiB upload limit). Werkzeug
            # stops at the limit without a word, so read one byte more to tell.
            request.max_content_length = MAX_BODY_BYTES + 1
            try:
                too_large = len(request.get_data(cache=True)) > MAX_BODY_BYTES
            except RequestEntityTooLarge:
                too_large = True
            if too_large:
                raise Refusal(413, "body_too_large", f"request body over {MAX_BODY_BYTES} bytes")
            body = request.get_json(silent=True)
            if body is None:
                raise Refusal(
                    400,
                    "malformed_json",
                    "the body is not valid JSON; send a JSON "
                    "object with Content-Type: application/json",
                )
            return jsonify(service.handle(body))
        except Refusal as refusal:
            log.info("inference refused: %s %s", refusal.status, refusal.code)
            return _refusal_response(refusal)
        except ModexError as exc:
            log.warning("inference failed: %s", exc)
            return _refusal_response(Refusal(500, "inference_failed", str(exc)))

    @bp.get("/v1/health")
    def health():
        try:
            chosen = request.args.get("model")
            ids = None if chosen is None else [service.model_id(chosen)]
        except Refusal as refusal:
            return _refusal_response(refusal)
        status, body = service.health(ids)
        response = jsonify(body)
        response.status_code = status
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.get("/v1/models")
    def models():
        return jsonify(
            {
                "models": service.describe(),
                "chainId": service.chain_id,
                "verifyingContract": service.verifying_contract,
                "channels": service.payments.channels_address,
            }
        )

    return bp


def create_app(service: InferenceService) -> Flask:
    """A standalone Flask app serving only the inference endpoint."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.register_blueprint(create_blueprint(service))

    @app.errorhandler(413)
    def too_large(_):
        return _refusal_response(
            Refusal(413, "body_too_large", f"request body over {MAX_BODY_BYTES} bytes")
        )

    @app.errorhandler(404)
    def not_found(_):
        return _refusal_response(Refusal(404, "not_found", "no such route; POST /v1/infer"))

    @app.errorhandler(405)
    def wrong_method(_):
        return _refusal_response(Refusal(405, "method_not_allowed", "use POST for /v1/infer"))

    @app.errorhandler(500)
    def internal(exc):  # e.g. the shared nonce database locked: JSON for the client, trace logged
        log.error("inference request failed", exc_info=getattr(exc, "original_exception", exc))
        return _refusal_response(
            Refusal(
                500,
                "internal_error",
                "the server failed on this request; the details are in its log. Retry shortly",
            )
        )

    return app
