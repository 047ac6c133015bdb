"""`modex worker`: the seller's key-delivery worker (long-running, or --once)."""

from __future__ import annotations

import os
from pathlib import Path

from node.session import Session, add_node_options, positive_seconds, run_until_signalled


def register(sub) -> None:
    p = sub.add_parser(
        "worker", help="deliver wrapped keys to buyers and validators of your models",
        description="Watch Purchased events (buyers and validator key requests) for models "
        "this account owns or operates and deliver each wrapped content key exactly once, "
        "deciding from on-chain state; safe to kill and restart at any point.")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--interval", type=positive_seconds, metavar="SECONDS",
                   help="seconds between passes (default: poll_interval from the config)")
    p.add_argument("--state", type=Path, metavar="FILE",
                   help="state file (default <data dir>/worker-<chainId>.json)")
    add_node_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from node.worker import CRASH_ENV, KeyDelivery, kill_self_hook

    session = Session.from_args(args)
    chain, config = session.chain, session.config
    state = args.state or config.data_dir / f"worker-{chain.chain_id}.json"
    worker = KeyDelivery(chain, session.signer, session.vault, state, store=session.store,
                         confirmations=config.confirmations,
                         crash=kill_self_hook(os.environ.get(CRASH_ENV)))
    if args.once:
        report = worker.poll()
        print(f"delivered {len(report.delivered)} key(s) {report.delivered}; skipped "
              f"{len(report.skipped)}" + "".join(f"\n  purchase {k}: {v}"
                                                 for k, v in report.skipped.items()))
        return 0
    return run_until_signalled(worker.run, args.interval or config.poll_interval)
