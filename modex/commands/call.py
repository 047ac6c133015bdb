"""`modex call MODEL_ID TEXT...`: ask a model served by `modex serve` for its answers, the request
signed with the wallet exactly as the service checks it (EIP-712, ml/signing.py).

    modex call 1 "great phone, love it" "worst service ever" [--url http://HOST:PORT] [--json]

The HTTP API it speaks, for other languages: docs/inference-api.md.
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

import httpx

from ml import signing
from modex.commandline import (
    add_command,
    add_node_options,
    positive_id,
    positive_seconds,
    service_url,
)
from node.errors import ConfigError, InputError, ModexError
from node.stack import Stack

CONNECT_TIMEOUT = 10.0  # seconds to reach the service; answering may take --timeout


class ServiceError(ModexError):
    """The inference service could not be reached, or did not answer as one."""


class CallRefused(ServiceError):
    """The service refused the call: its HTTP status, its error code (docs/inference-api.md)
    and its sentence."""


def register(sub) -> None:
    p = add_command(sub, "call", run)
    p.add_argument(
        "model_id",
        metavar="MODEL_ID",
        type=positive_id,
        help="the model's id (`modex models` lists them)",
    )
    p.add_argument(
        "texts", metavar="TEXT", nargs="+", help="a text to classify (several: one answer each)"
    )
    p.add_argument(
        "--url",
        default=service_url(),
        help="the service's URL, as `modex serve` prints it (default: %(default)s)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the service's JSON response as it came instead of one line per text",
    )
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for the answers (default: %(default)s)",
    )
    add_node_options(p, "--config", "--data-dir", "--chain", "--keystore", "--deployment")


def run(args) -> int:
    """Sign an inference request for the TEXTs with your wallet (the keystore; EIP-712 typed data
    over the model id, the texts' digest, a fresh nonce and a deadline minutes ahead), send
    it to the inference service at --url and print each text's label and score. The service
    answers accounts that hold a licence for the model (`modex buy MODEL_ID`); it must check
    licences on the chain and marketplace your node is configured for."""
    url = base_url(args.url)
    timeout = httpx.Timeout(args.timeout, connect=CONNECT_TIMEOUT)
    with httpx.Client(timeout=timeout) as client:
        served = served_models(client, url, args.model_id)  # before the password is asked
        check_model_served(served, url, args.model_id)
        session = Stack.from_args(args)
        body = request_body(session, served, url, args.model_id, args.texts)
        response = _send(client, "POST", url, "/v1/infer", args.model_id, json=body)
    if args.json:
        sys.stdout.write(response.text if response.text.endswith("\n") else response.text + "\n")
    answer = answer_of(response, url, args.model_id)
    if not args.json:
        print_answers(args.texts, answer)
    return 0


def request_body(session: Stack, served: dict, url: str, model_id: int, texts: list[str]) -> dict:
    """The body of POST /v1/infer: the InferenceRequest signed by the session's wallet for the
    chain and marketplace its node is configured for (the service must check licences there).
    A per-call voucher (issue 14 §3), once services take one, is signed here beside it."""
    chain = session.chain
    check_same_marketplace(served, url, chain.chain_id, chain.marketplace.address)
    return signing.sign_request_as(
        session.signer,
        model_id=model_id,
        inputs=texts,
        chain_id=chain.chain_id,
        verifying_contract=chain.marketplace.address,
    )


def base_url(text: str) -> str:
    """``--url`` without a trailing slash; InputError unless an http(s) URL with a host."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(
            f"--url {text!r} is not an http:// or https:// URL with a host: pass the URL "
            f"`modex serve` prints, e.g. {service_url()}"
        )
    return text.rstrip("/")


def _send(client: httpx.Client, method: str, url: str, route: str, model_id: int, **options):
    """The service's response to ``method`` ``url``+``route``; ServiceError when there is none."""
    try:
        return client.request(method, url + route, **options)
    except httpx.ConnectError as exc:
        raise ServiceError(
            f"no inference service answers at {url} ({exc}). Start one where the model is with "
            f"`modex serve MODEL_DIR --model-id {model_id} --chain URL` (it prints the URL to "
            f"pass here), or pass the --url of a running one"
        ) from None
    except httpx.TimeoutException:
        raise ServiceError(
            f"the service at {url} did not answer {method} {route} in time; retry, or wait "
            f"longer with --timeout SECONDS"
        ) from None
    except httpx.HTTPError as exc:
        raise ServiceError(f"cannot call the service at {url}: {exc}") from None


def _json_object(response: httpx.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def served_models(client: httpx.Client, url: str, model_id: int) -> dict:
    """What GET /v1/models says: {"models": {id: its entry}, "chainId", "verifyingContract"}."""
    response = _send(client, "GET", url, "/v1/models", model_id)
    body = _json_object(response)
    try:
        if response.status_code == 200 and body is not None:
            return {
                "models": {int(m["modelId"]): m for m in body["models"]},
                "chainId": int(body["chainId"]),
                "verifyingContract": str(body["verifyingContract"]),
            }
    except (KeyError, TypeError, ValueError):
        pass  # said below, as any answer that is not the service's
    raise ServiceError(
        f"{url} does not answer as a Modex inference service (GET {url}/v1/models: HTTP "
        f"{response.status_code} {response.text[:120]!r}); pass the URL `modex serve` "
        f"prints, without /v1/..."
    )


def check_model_served(served: dict, url: str, model_id: int) -> None:
    """InputError unless the service lists the model; ServiceError when it cannot load it."""
    if model_id not in served["models"]:
        listed = ", ".join(str(m) for m in sorted(served["models"])) or "none"
        raise InputError(
            f"the service at {url} does not serve model {model_id} (it serves: {listed}); "
            f"pass the --url of the service that serves it"
        )
    entry = served["models"][model_id]
    if entry.get("status") == "unavailable":
        raise ServiceError(
            f"the service at {url} cannot serve model {model_id} now: {entry.get('reason')}"
        )


def check_same_marketplace(served: dict, url: str, chain_id: int, marketplace: str) -> None:
    """ConfigError unless the service checks licences where this node signs: a request signed
    for another chain or marketplace could never verify there."""
    theirs = (served["chainId"], served["verifyingContract"].lower())
    if theirs != (chain_id, marketplace.lower()):
        raise ConfigError(
            f"the service at {url} checks licences on chain {served['chainId']} (marketplace "
            f"{served['verifyingContract']}), your node on chain {chain_id} (marketplace "
            f"{marketplace}): pass the --chain URL and --deployment FILE of the service's chain",
            key="chain",
        )


def answer_of(response: httpx.Response, url: str, model_id: int) -> dict:
    """The service's answer to a call; CallRefused with its words when it refused."""
    body = _json_object(response)
    if response.status_code == 200 and body is not None and "outputs" in body:
        return body
    error = body.get("error") if body is not None else None
    if not isinstance(error, dict):
        raise ServiceError(
            f"the service at {url} answered HTTP {response.status_code} without a Modex error "
            f"({response.text[:120]!r}); is --url the URL `modex serve` printed?"
        )
    code = error.get("code")
    words = f"the service refused the call ({response.status_code} {code}): {error.get('message')}"
    if code == "no_licence":
        words += (
            f". To call it, buy a licence with `modex buy {model_id}`, or pass the --keystore "
            f"(or --data-dir) of the wallet that holds one"
        )
    elif "Retry-After" in response.headers:
        words += f" (retry after {response.headers['Retry-After']} s)"
    raise CallRefused(words, status=response.status_code, code=code)


def print_answers(texts: list[str], answer: dict) -> None:
    """One line per text: its label, its score and the text; the service's warnings on stderr."""
    width = max(len(str(out["label"])) for out in answer["outputs"])
    for text, out in zip(texts, answer["outputs"], strict=True):
        print(f"{out['label']:<{width}}  {float(out['score']):.3f}  {text}")
    for warning in answer.get("warnings", []):
        print(f"modex: warning: {warning}", file=sys.stderr)
