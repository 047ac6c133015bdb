"""`modex worker`: the seller's key-delivery worker (long-running, or --once)."""

from __future__ import annotations

import argparse
import math
import os

from modex.commandline import (
    add_command,
    add_follower_options,
    add_node_options,
    run_until_signalled,
)
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
    add_node_options(p)


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
    safe to kill and restart at any point."""
    overrides = {
        key: value
        for key, value in (
            ("worker_replace_after", args.replace_after),
            ("worker_max_fee_gwei", args.max_fee_gwei),
        )
        if value is not None
    }
    stack = Stack(config_from_args(args).replace(**overrides))
    worker = stack.key_delivery(state=args.state, crash=kill_self_hook(os.environ.get(CRASH_ENV)))
    if args.once:
        report = worker.poll()
        print(
            f"delivered {len(report.delivered)} key(s) {report.delivered}; skipped "
            f"{len(report.skipped)}"
            + "".join(f"\n  purchase {k}: {v}" for k, v in report.skipped.items())
            + "".join(
                f"\n  purchase {k}: sent {v}, not mined yet" for k, v in report.pending.items()
            )
        )
        return 0
    return run_until_signalled(worker.run, args.interval or stack.config.poll_interval)
