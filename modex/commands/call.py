"""`modex call MODEL_ID TEXT...`: ask a model served by `modex serve` for its answers, the request
signed with the wallet exactly as the service checks it (EIP-712, ml/signing.py).

    modex call 1 "great phone, love it" "worst service ever" [--url http://HOST:PORT] [--json]
    modex call 1 "great phone" --channel 3      (paid per call: a voucher on payment channel 3)

With ``--channel`` each call also signs the next voucher on the channel: the cumulative amount
is the last one the service served (remembered per channel in <data dir>/vouchers.json) plus the
model's price per call (Channels.callPrice), so 100 calls cost 100 x the price and one claim.
When the service answers 409 voucher_stale (it holds a higher voucher: a call from another
process, or one whose answer was lost), the call is signed again once above the amount it names,
provided this data dir signed that much (a service cannot make the wallet sign for more).

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
from node.amounts import ETH, Token, fmt_amount
from node.channels import VoucherBook
from node.errors import ConfigError, InputError, ModexError
from node.stack import Stack
from node.tokens import payment_token

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
        "--channel",
        type=positive_id,
        metavar="CHANNEL_ID",
        help="pay per call with a voucher on this payment channel (`modex channel open "
        "MODEL_ID` opens one) instead of a licence, subscription or free trial",
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
        if args.channel is None:
            body = request_body(session, served, url, args.model_id, args.texts)
            response = _send(client, "POST", url, "/v1/infer", args.model_id, json=body)
        else:
            response = call_with_voucher(client, session, served, url, args)
    if args.json:
        sys.stdout.write(response.text if response.text.endswith("\n") else response.text + "\n")
    answer = answer_of(response, url, args.model_id)
    if not args.json:
        token = payment_token(session.chain, args.model_id) if args.channel is not None else ETH
        print_answers(args.texts, answer, token)
    return 0


def request_body(session: Stack, served: dict, url: str, model_id: int, texts: list[str]) -> dict:
    """The body of POST /v1/infer: the InferenceRequest signed by the session's wallet for the
    chain and marketplace its node is configured for (the service must check licences there).
    A voucher, when the call pays with one, is added by call_with_voucher."""
    chain = session.chain
    check_same_marketplace(served, url, chain.chain_id, chain.marketplace.address)
    return signing.sign_request_as(
        session.signer,
        model_id=model_id,
        inputs=texts,
        chain_id=chain.chain_id,
        verifying_contract=chain.marketplace.address,
    )


def call_with_voucher(client: httpx.Client, session: Stack, served: dict, url: str, args):
    """POST the call with the next voucher on ``args.channel``; after a 409 voucher_stale, once
    more above the amount the service holds (if this data dir signed that much)."""
    chain, model_id, channel = session.chain, args.model_id, args.channel
    channels = chain.contract("Channels")
    if not served.get("channels"):
        raise InputError(
            f"the service at {url} takes no vouchers (its chain has no Channels contract): call "
            f"it without --channel, with a licence (`modex buy {model_id}`) or a subscription "
            f"(`modex subscribe {model_id}`)"
        )
    if served["channels"].lower() != channels.address.lower():
        raise ConfigError(
            f"the service at {url} takes vouchers on Channels contract {served.get('channels')}, "
            f"your node's is {channels.address}: pass the --chain and --deployment of the "
            f"service's chain",
            key="chain",
        )
    price = int(chain.call(channels.functions.callPrice(model_id)))
    if price == 0:
        raise InputError(
            f"model {model_id} has no price per call (its seller never set one with "
            f"Channels.setCallPrice): call it with a licence (`modex buy {model_id}`) or a "
            f"subscription (`modex subscribe {model_id}`) instead of --channel"
        )
    book = VoucherBook(session.config.data_dir / "vouchers.json", chain.chain_id, channels.address)

    def pay(amount: int) -> httpx.Response:
        book.set(channel, signed=max(amount, book.get(channel, "signed")))  # before it leaves
        body = signing.with_voucher(
            request_body(session, served, url, model_id, args.texts),
            session.signer,
            chain_id=chain.chain_id,
            channels_address=channels.address,
            channel_id=channel,
            cumulative_amount=amount,
        )
        response = _send(client, "POST", url, "/v1/infer", model_id, json=body)
        if response.status_code == 200:
            book.set(channel, used=amount)
        return response

    response = pay(book.get(channel, "used") + price)
    error = (_json_object(response) or {}).get("error") or {}
    if response.status_code != 409 or error.get("code") != "voucher_stale":
        return response
    held = int(error.get("acceptedAmount", 0))
    if held > book.get(channel, "signed"):
        raise CallRefused(
            f"the service at {url} says it holds a voucher for {held} on channel {channel}, "
            f"more than this data dir ever signed ({book.get(channel, 'signed')}, recorded in "
            f"{book.path}); if you signed it from another data dir, copy that record here; "
            f"otherwise do not pay this service",
            status=409,
            code="voucher_stale",
        )
    book.set(channel, used=held)
    return pay(held + price)


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
    """What GET /v1/models says: {"models": {id: its entry}, "chainId", "verifyingContract",
    "channels"}."""
    response = _send(client, "GET", url, "/v1/models", model_id)
    body = _json_object(response)
    try:
        if response.status_code == 200 and body is not None:
            return {
                "models": {int(m["modelId"]): m for m in body["models"]},
                "chainId": int(body["chainId"]),
                "verifyingContract": str(body["verifyingContract"]),
                "channels": body.get("channels"),  # None: the service takes no vouchers
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


def print_answers(texts: list[str], answer: dict, token: Token = ETH) -> None:
    """One line per text: its label, its score and the text; the service's warnings, and how the
    call was paid when not by a licence (a voucher's running total in ``token``), on stderr."""
    width = max(len(str(out["label"])) for out in answer["outputs"])
    for text, out in zip(texts, answer["outputs"], strict=True):
        print(f"{out['label']:<{width}}  {float(out['score']):.3f}  {text}")
    for warning in answer.get("warnings", []):
        print(f"modex: warning: {warning}", file=sys.stderr)
    paid = answer.get("paidWith") or {}
    if paid.get("kind") == "voucher":
        print(
            f"modex: paid with a voucher on channel {paid.get('channelId')}: "
            f"{fmt_amount(int(paid.get('cumulativeAmount', 0)), token)} in all so far",
            file=sys.stderr,
        )
    elif paid.get("kind") == "trial":
        print("modex: a free trial call", file=sys.stderr)
