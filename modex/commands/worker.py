"""`modex worker`: the seller's key-delivery worker and, with a service store, the claimer of its
inference service's vouchers (node/claimer.py); with --retrain-after N, the retraining of its
models on their feedback (modex/retraining.py); long-running, or --once."""

from __future__ import annotations

import argparse
import math
import os
import threading
from pathlib import Path

from modex.commandline import (
    add_command,
    add_follower_options,
    add_node_options,
    run_until_signalled,
)
from modex.retraining import RetrainJob
from node.claimer import CRASH_ENV as CLAIMER_CRASH_ENV
from node.claimer import claimer_crash_hook
from node.servicestore import open_service_store
from node.stack import Stack, config_from_args
from node.worker import CRASH_ENV, kill_self_hook


def register(sub) -> None:
    p = add_command(sub, "worker", run)
    add_follower_options(
        p,
        once="one pass, then exit",
        state="state file (default <data dir>/worker-<chainId>.json, beside the index)",
    )
    p.add_argument(
        "--replace-after",
        type=_amount(0, "seconds", "0 or more"),
        metavar="SECONDS",
        help="replace a deliverKey not mined after this long at the same nonce with "
        "fees +25%% (default: worker_replace_after from the config, 30)",
    )
    p.add_argument(
        "--max-fee-gwei",
        type=_amount(1e-9, "gwei", "more than 0"),
        metavar="GWEI",
        help="never offer more than this per gas, replacements included (default: "
        "worker_max_fee_gwei from the config, 100)",
    )
    p.add_argument(
        "--service-store",
        metavar="URL",
        help="the state store `modex serve` keeps its vouchers in (a path, sqlite:///PATH, "
        "redis://... or postgresql://...): claim them on-chain when claim_threshold_calls "
        "calls' worth is unclaimed or the channel expires within claim_margin seconds "
        "(default: service_store from the config, else the SQLite file `modex serve` keeps "
        "in the data dir when there is one; none: no claims)",
    )
    p.add_argument(
        "--retrain-after",
        type=_count,
        metavar="N",
        help="retrain a model you own on its feedback once N new labelled items have come in, "
        "and publish the result if the eval set does not regress (default: "
        "worker_retrain_after from the config, 0: never)",
    )
    add_node_options(p)


def _count(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number of items, 0 or more")
    return int(text)


def _amount(least: float, unit: str, words: str):
    """An argparse type: a finite number of ``unit`` of at least ``least``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not least <= value < math.inf:
            raise argparse.ArgumentTypeError(f"{text!r} must be a number of {unit}, {words}")
        return value

    return parse


def run(args) -> int:
    """Watch Purchased events (buyers and validator key requests) for models this account owns
    or operates and deliver each wrapped content key exactly once, deciding from on-chain state;
    with --service-store, also claim the vouchers the inference service stored there, each
    amount once; safe to kill and restart at any point."""
    overrides = {
        key: value
        for key, value in (
            ("worker_replace_after", args.replace_after),
            ("worker_max_fee_gwei", args.max_fee_gwei),
            ("worker_retrain_after", args.retrain_after),
        )
        if value is not None
    }
    if args.service_store is not None:
        overrides["service_store"] = args.service_store
    stack = Stack(config_from_args(args).replace(**overrides))
    worker = stack.key_delivery(state=args.state, crash=kill_self_hook(os.environ.get(CRASH_ENV)))
    chain = stack.chain
    store_at = stack.config.service_store_at(chain.chain_id, chain.marketplace.address)
    claimer = None
    if stack.config.service_store or Path(store_at).is_file():  # this data dir's `modex serve`
        claimer = stack.claimer(
            open_service_store(store_at),
            crash=claimer_crash_hook(os.environ.get(CLAIMER_CRASH_ENV)),
        )
    retraining = None
    if stack.config.worker_retrain_after:
        retraining = RetrainJob(stack, retrain_after=stack.config.worker_retrain_after)
    if args.once:
        report = worker.poll()
        print(
            f"delivered {len(report.delivered)} key(s) {report.delivered}; skipped "
            f"{len(report.skipped)}"
            + "".join(f"\n  purchase {k}: {v}" for k, v in report.skipped.items())
            + "".join(
                f"\n  purchase {k}: sent {v}, not mined yet" for k, v in report.pending.items()
            )
            + "".join(
                f"\n  model {m} version {v}: key delivered to {account}"
                for m, v, account in report.version_keys
            )
        )
        if claimer is not None:
            print(claimer.poll().summary())
        if retraining is not None:
            for outcome in retraining.poll():
                print(outcome.summary())
        return 0

    def loop(stop: threading.Event, interval: float) -> None:
        if claimer is not None:
            threading.Thread(
                target=claimer.run, args=(stop, interval), name="modex-claimer", daemon=True
            ).start()
        if retraining is not None:
            threading.Thread(
                target=retraining.run, args=(stop, interval), name="modex-retrain", daemon=True
            ).start()
        worker.run(stop, interval=interval)

    return run_until_signalled(loop, args.interval or stack.config.poll_interval)
