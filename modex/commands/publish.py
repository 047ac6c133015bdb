"""`modex publish MODEL_DIR --price AMOUNT [--token ADDRESS|--stablecoin] [--subscription
PRICE/PERIOD]`: seal, pin, list a model (priced in ETH or an ERC-20) and claim its work digest;
`modex publish --new-version MODEL_ID MODEL_DIR`: the same steps for new weights of a listing;
`modex claim MODEL_ID MODEL_DIR`: the claim alone, for a listing whose claim was not sent
(node/publish.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from modex.commandline import add_command, add_node_options, positive_id
from modex.progress import ProgressBars
from node import publish
from node.amounts import ETH, Token, fmt_amount, fmt_subscription, parse_amount, parse_period
from node.errors import ConfigError, InputError
from node.fetch import content_ref, load_metadata
from node.stack import Stack
from node.tokens import known_token, stablecoin

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = add_command(sub, "publish", run)
    p.add_argument("model_dir", metavar="MODEL_DIR", type=Path)
    p.add_argument(
        "--price",
        metavar="AMOUNT",
        help="price of the weights in ETH, e.g. 0.01, or in the --token, e.g. 5 (a new "
        "listing needs one)",
    )
    p.add_argument(
        "--new-version",
        type=positive_id,
        metavar="MODEL_ID",
        help="publish MODEL_DIR as the next version of your listing MODEL_ID (its price and "
        "terms stay; name, description, task, licence carry over unless given)",
    )
    add_payment_options(p)
    p.add_argument("--name", help="listing name (default: the folder's name)")
    p.add_argument("--description", default="")
    p.add_argument("--task", default="", help="e.g. text-classification")
    p.add_argument("--license", default="", help="e.g. apache-2.0")
    p.add_argument("--framework", default="", help="default: transformers when config.json exists")
    p.add_argument(
        "--metrics",
        type=Path,
        metavar="FILE",
        help="metrics JSON with its eval_set (default: MODEL_DIR/metrics.json if any, "
        "else the metrics of MODEL_DIR/evaluation.json); they must be the report's",
    )
    p.add_argument(
        "--card", type=Path, metavar="FILE", help="model card (default: MODEL_DIR/README.md)"
    )
    p.add_argument(
        "--operator",
        metavar="ADDRESS",
        help="worker address allowed to deliver keys (default: you, the seller)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_node_options(p)

    p = add_command(sub, "claim", run_claim)
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument("model_dir", metavar="MODEL_DIR", type=Path)
    add_node_options(p)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read metrics JSON {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"metrics file {path} must hold a JSON object")
    return data


def add_payment_options(parser, *, eth: bool = False) -> None:
    """--token ADDRESS | --stablecoin (| --eth) and --subscription PRICE/PERIOD: what a model is
    priced in and its subscription offer (`modex publish`, `modex terms`)."""
    paid_in = parser.add_mutually_exclusive_group()
    paid_in.add_argument(
        "--token",
        metavar="ADDRESS",
        help="price the model in this ERC-20 token instead of ETH (its symbol and decimals "
        "are read from it)",
    )
    paid_in.add_argument(
        "--stablecoin",
        action="store_true",
        help="price the model in the test stablecoin `modex up` deploys on its local chain",
    )
    if eth:
        paid_in.add_argument("--eth", action="store_true", help="price the model in ETH")
    parser.add_argument(
        "--subscription",
        metavar="PRICE/PERIOD",
        help="sell time-limited access to your service: PRICE per PERIOD, in the model's "
        "token, e.g. 5/30d or 0.01/12h (periods: s, m, h, d, w)",
    )


def payment_token_of(chain, args) -> Token | None:
    """The token --token or --stablecoin names (None: neither was given)."""
    if args.stablecoin:
        return stablecoin(chain)
    return known_token(chain, args.token, "--token") if args.token else None


def terms_of(text: str, token: Token) -> tuple[int, int]:
    """--subscription PRICE/PERIOD ("5/30d") -> (price per period in ``token``'s units,
    seconds)."""
    price, slash, period = text.partition("/")
    if not slash:
        raise InputError(
            f"--subscription '{text[:40]}' needs a price and a period: write PRICE/PERIOD, "
            "e.g. 5/30d",
            what="--subscription",
        )
    amount = parse_amount(price, token, "--subscription price")
    if amount == 0:
        raise InputError(
            "--subscription must cost more than 0 (leave it out to offer none)",
            what="--subscription",
        )
    return amount, parse_period(period, "--subscription period")


def run(args) -> int:
    """Hash the model directory (docs/formats.md §2), seal a deterministic tar of it (4.2), pin
    the ciphertext and the metadata JSON (4.5), list it on-chain at --price and keep its content
    key in your key vault (encrypted, for `modex worker`), and claim the work digest of
    MODEL_DIR/evaluation.json (the evaluation report `modex train` or `modex evaluate --report`
    writes), which validators must reproduce for the model to become Verified; without that
    report the model is listed with no claim and can never be. --token (or --stablecoin) prices
    it in an ERC-20 instead of ETH, and --subscription also sells time-limited access to your
    service at PRICE per PERIOD in the same token. Pickle weight files (*.bin, *.pt,
    ...) are refused: save safetensors. Prints the model id, hash, CIDs and the claimed digest.
    With --new-version MODEL_ID it publishes MODEL_DIR as the next version of that listing
    instead (ModelRegistry.publishVersion, then its own claim); its price and terms stay."""
    if args.new_version is not None:
        return run_new_version(args)
    if args.price is None:
        raise InputError(
            "a new listing needs a price: add --price AMOUNT (or --new-version MODEL_ID to "
            "publish new weights of a listing you own)",
            what="--price",
        )
    session = Stack.from_args(args)
    chain = session.chain
    token = payment_token_of(chain, args) or ETH
    price = parse_amount(args.price, token, "--price")
    subscription = terms_of(args.subscription, token) if args.subscription else None
    info = publish.ListingInfo(
        **_described(args) | {"name": args.name or args.model_dir.resolve().name}
    )
    signer, vault, store = session.signer, session.vault, session.store
    with ProgressBars() as bars:
        result = publish.publish(
            chain,
            signer,
            store,
            vault,
            args.model_dir,
            info,
            price_wei=price,
            operator=args.operator,
            token=token,
            subscription=subscription,
            cid_profile=session.config.cid_profile,
            progress=bars,
        )
    out = {
        "model_id": result.model_id,
        "model_hash": "0x" + result.model_hash.hex(),
        "content_cid": result.content_cid,
        "metadata_cid": result.metadata_cid,
        "price": fmt_amount(price, token),
        "subscription": fmt_subscription(*subscription, token) if subscription else None,
        "tx": result.tx_hash,
        "work_digest": "0x" + result.work_digest.hex() if result.work_digest else None,
    }
    _report(args, out)
    return 0


def _report(args, out: dict) -> None:
    """What publish printed: JSON, or one line per field (a missing claim said, and why)."""
    if args.json:
        print(json.dumps(out))
        return
    for k, v in out.items():
        if k != "subscription" or v is not None:
            print(f"{k:13} {v if v is not None else 'none claimed'}")
    if out["work_digest"] is None:
        print(f"warning: {publish.no_report(args.model_dir)}")


def _described(args) -> dict:
    """What the seller says about the model (node.publish.ListingInfo's fields), from the
    options: --metrics (default MODEL_DIR/metrics.json if any) and --card read."""
    metrics_path = args.metrics or (args.model_dir / "metrics.json")
    metrics = _read_json(metrics_path) if (args.metrics or metrics_path.is_file()) else {}
    return {
        "name": args.name,
        "description": args.description,
        "task": args.task,
        "license": args.license,
        "framework": args.framework,
        "metrics": metrics,
        "card": args.card.read_text(encoding="utf-8") if args.card else None,
    }


def run_new_version(args) -> int:
    """`modex publish --new-version MODEL_ID MODEL_DIR`: the listing's description carried over
    (what is given replaces it), MODEL_DIR hashed, sealed with a fresh key, pinned, published as
    the next version and its work digest claimed."""
    priced = [
        flag
        for flag, on in (
            ("--price", args.price),
            ("--token", args.token),
            ("--stablecoin", args.stablecoin),
            ("--subscription", args.subscription),
        )
        if on
    ]
    if priced:
        raise InputError(
            f"{', '.join(priced)} cannot change with a new version: its terms stay the "
            f"listing's; change them with `modex terms {args.new_version}`",
            what=priced[0],
        )
    session = Stack.from_args(args)
    chain, store = session.chain, session.store
    _hash, metadata_cid = content_ref(chain, args.new_version)
    info = publish.version_info(load_metadata(store, metadata_cid), **_described(args))
    with ProgressBars() as bars:
        result = publish.publish_version(
            chain,
            session.signer,
            store,
            session.vault,
            args.new_version,
            args.model_dir,
            info,
            cid_profile=session.config.cid_profile,
            progress=bars,
        )
    out = {
        "model_id": result.model_id,
        "version": result.version,
        "model_hash": "0x" + result.model_hash.hex(),
        "content_cid": result.content_cid,
        "metadata_cid": result.metadata_cid,
        "tx": result.tx_hash,
        "work_digest": "0x" + result.work_digest.hex() if result.work_digest else None,
    }
    _report(args, out)
    return 0


def run_claim(args) -> int:
    """Record on-chain (ModelRegistry.claimMetrics) the work digest of MODEL_DIR/evaluation.json
    for the model you listed as MODEL_ID: what `modex publish` does right after listing.
    MODEL_DIR must be the listed model and its listing must declare the report's metrics. Only a
    claim made before a validation round opens counts in it."""
    session = Stack.from_args(args)
    digest, tx = publish.claim_listed(
        session.chain, session.signer, session.store, args.model_id, args.model_dir
    )
    state = f"claimed in {tx}" if tx else "already claimed: nothing sent"
    print(f"model {args.model_id}: work digest 0x{digest.hex()} {state}")
    return 0
