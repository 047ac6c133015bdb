"""`modex publish MODEL_DIR --price ETH`: seal, pin, list a model and claim its work digest;
`modex claim MODEL_ID MODEL_DIR`: the claim alone, for a listing whose claim was not sent
(node/publish.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from modex.commandline import add_command, add_node_options, positive_id
from modex.progress import ProgressBars
from node import market, publish
from node.errors import ConfigError
from node.stack import Stack

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = add_command(sub, "publish", run)
    p.add_argument("model_dir", metavar="MODEL_DIR", type=Path)
    p.add_argument("--price", required=True, metavar="ETH", help="price in ETH, e.g. 0.01")
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


def run(args) -> int:
    """Hash the model directory (docs/formats.md §2), seal a deterministic tar of it (4.2), pin
    the ciphertext and the metadata JSON (4.5), list it on-chain at --price and keep its content
    key in your key vault (encrypted, for `modex worker`), and claim the work digest of
    MODEL_DIR/evaluation.json (the evaluation report `modex train` or `modex evaluate --report`
    writes), which validators must reproduce for the model to become Verified; without that
    report the model is listed with no claim and can never be. Pickle weight files (*.bin, *.pt,
    ...) are refused: save safetensors. Prints the model id, hash, CIDs and the claimed digest."""
    session = Stack.from_args(args)
    price = market.parse_eth(args.price, what="--price")
    metrics_path = args.metrics or (args.model_dir / "metrics.json")
    metrics = _read_json(metrics_path) if (args.metrics or metrics_path.is_file()) else {}
    card = args.card.read_text(encoding="utf-8") if args.card else None
    info = publish.ListingInfo(
        name=args.name or args.model_dir.resolve().name,
        description=args.description,
        task=args.task,
        license=args.license,
        framework=args.framework,
        metrics=metrics,
        card=card,
    )
    chain, signer, vault, store = session.chain, session.signer, session.vault, session.store
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
            cid_profile=session.config.cid_profile,
            progress=bars,
        )
    out = {
        "model_id": result.model_id,
        "model_hash": "0x" + result.model_hash.hex(),
        "content_cid": result.content_cid,
        "metadata_cid": result.metadata_cid,
        "price": market.fmt_eth(price),
        "tx": result.tx_hash,
        "work_digest": "0x" + result.work_digest.hex() if result.work_digest else None,
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:13} {v if v is not None else 'none claimed'}")
        if result.work_digest is None:
            print(f"warning: {publish.no_report(args.model_dir)}")
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
