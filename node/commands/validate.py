"""`modex validate`: the validator agent (long-running, or --once)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from node.session import Session, add_node_options, positive_seconds, run_until_signalled

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "validate", help="stake, fetch new listings, re-hash (and evaluate) them, attest",
        description="Stake up to the minimum if needed, ask for the key of every new listing "
        "(no payment: the seller's worker delivers it like a purchase), fetch, decrypt and "
        "re-hash it, run the listing's declared evaluation (ml/ on its public eval set) unless "
        "--no-evaluate, and attest the observed hash and the metrics digest on-chain.")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--interval", type=positive_seconds, metavar="SECONDS")
    evaluate = p.add_mutually_exclusive_group()
    evaluate.add_argument("--evaluate", dest="no_evaluate", action="store_false", default=False,
                          help="run the listing's declared evaluation with ml/ (the default; "
                          "ml/ and torch are imported only when a listing declares an eval set)")
    evaluate.add_argument("--no-evaluate", dest="no_evaluate", action="store_true",
                          help="only re-hash; attest a zero metrics digest")
    p.add_argument("--stake", metavar="ETH", help="stake this much (default: the minimum)")
    p.add_argument("--state", type=Path, metavar="FILE",
                   help="state file (default <data dir>/validator-<chainId>.json)")
    add_node_options(p)
    p.set_defaults(func=run)


def ml_evaluator(model_dir: Path, metadata: dict) -> dict:
    """Run ml/'s reproducible evaluation on the listing's declared eval set (imported lazily:
    node/ never imports ml/ or torch at module import time)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ml.evaluate import evaluate_dir

    return evaluate_dir(model_dir, metadata["metrics"]["eval_set"])


def run(args) -> int:
    from node import market
    from node.validator import ValidatorAgent

    session = Session.from_args(args)
    chain, config = session.chain, session.config
    agent = ValidatorAgent(
        chain, session.signer, session.store,
        args.state or config.data_dir / f"validator-{chain.chain_id}.json",
        work_dir=config.data_dir / "validate", confirmations=config.confirmations,
        evaluator=None if args.no_evaluate else ml_evaluator,
        stake_amount=market.parse_eth(args.stake, what="--stake") if args.stake else None)
    if args.once:
        r = agent.poll()
        for a in r.attested:
            print(f"model {a.model_id}: attested 0x{a.observed_hash.hex()} "
                  f"({'matches' if a.matches else 'MISMATCH'}; metrics digest "
                  f"0x{a.metrics_digest.hex()}){' ' + a.reason if a.reason else ''}")
        if r.requested:
            print(f"asked for the keys of models {r.requested}")
        if r.waiting:
            print(f"waiting for the keys of models {r.waiting}")
        for model_id, reason in sorted(r.retry.items()):
            print(f"model {model_id}: not checked, nothing attested ({reason}); the next pass "
                  "tries again")
        return 0
    return run_until_signalled(agent.run, args.interval or config.poll_interval)
