"""`modex validate`: the validator agent (long-running, --once, or --until-settled MODEL_ID…)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ml.evaluate import evaluate_listing
from modex.commandline import (
    add_command,
    add_follower_options,
    add_node_options,
    positive_id,
    positive_seconds,
    run_until_signalled,
)
from node import market
from node.errors import ChainError, ConfigError
from node.market import fmt_eth
from node.protocol import ModelStatus
from node.stack import Stack

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = add_command(sub, "validate", run)
    mode = p.add_mutually_exclusive_group()
    add_follower_options(
        p,
        once="one pass: each model takes the one step that is due now, then exit",
        state="state file: the chain checkpoint and the salts of commitments not yet "
        "revealed; keep it (default <data dir>/validator-<chainId>-<address>.json)",
        group=mode,
    )
    mode.add_argument(
        "--until-settled",
        nargs="*",
        type=positive_id,
        metavar="MODEL_ID",
        help="carry these models (default: every listing found) through to the end "
        "— key, evaluation, commit, reveal, settlement, release — printing what "
        "each waits for and until when; exits 0 once all are settled and released",
    )
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help="with --until-settled: give up after this long (exit 1, saying what "
        "each model still waits for); default: no limit",
    )
    p.add_argument("--stake", metavar="ETH", help="stake this much (default: the minimum)")
    p.add_argument(
        "--validator",
        metavar="ADDRESS",
        help="attest for this validator with the wallet (--account), the hot key it named with "
        "`modex validator set-attester`; the agent then never stakes, and needs no cold key",
    )
    add_node_options(p)


def ml_evaluator(model_dir: Path, metadata: dict) -> dict:
    """ml/'s reproducible evaluation report on the listing's declared eval set: the evaluation
    this command gives the validator agent (node/ never imports ml/; torch loads when it runs)."""
    return evaluate_listing(model_dir, metadata)


def run(args) -> int:
    """Stake up to the minimum if needed, ask for the key of every new listing (no payment: the
    seller's worker delivers it like a purchase), fetch, decrypt and re-hash it, run the
    listing's declared evaluation (ml/ on its public eval set), then take part in its validation
    round: commit to the observed hash and work digest (the salt is kept in the state file
    first), reveal once commits close, settle once reveals close, and release the seat (its
    bonds return to the stake, or are forfeited). Without --once or --until-settled it keeps
    doing so for every listing until stopped."""
    if args.timeout is not None and args.until_settled is None:
        raise ConfigError("--timeout applies to --until-settled only", key="timeout")
    if args.validator and args.stake:
        raise ConfigError(
            "--stake is the validator's own: stake with `modex validator stake` from its "
            "wallet, and run the agent with --validator and the attester key only",
            key="stake",
        )
    stack = Stack.from_args(args)
    signer = stack.signer  # first: without an account nothing else matters
    agent = stack.validator_agent(
        signer=signer,
        evaluator=ml_evaluator,
        stake_amount=market.parse_eth(args.stake, what="--stake") if args.stake else None,
        state=args.state,
        validator=args.validator,
    )
    interval = args.interval or stack.config.poll_interval
    if args.once:
        report = agent.poll()
        for _, line in progress_lines(agent, report):
            print(line)
        return 0
    if args.until_settled is not None:
        return until_settled(agent, args.until_settled, interval=interval, timeout=args.timeout)
    return run_until_signalled(agent.run, interval)


def until_settled(
    agent, model_ids: list[int], *, interval: float, timeout: float | None, say=print
) -> int:
    """Poll until each model is settled and this validator's seat released; 0, or 1 on timeout."""
    chain = agent.chain
    count = int(chain.call(chain.registry.functions.modelCount()))
    unknown = [m for m in model_ids if m > count]
    if unknown:
        raise ConfigError(
            f"model(s) {unknown} are not listed (this registry lists models 1 to "
            f"{count}); `modex models` lists them"
        )
    targets = set(model_ids)
    deadline = None if timeout is None else time.monotonic() + timeout
    said: set = set()
    while True:
        report = agent.poll(targets or None)
        if not targets:
            targets = set(agent.todo) | set(report.done)
            say(
                f"carrying models {sorted(targets)} to the end"
                if targets
                else "no listing to validate"
            )
        for key, line in progress_lines(agent, report):
            if key not in said:  # a wait is said once, not at every pass
                said.add(key)
                say(line)
        open_ = sorted(targets & agent.todo)
        if not open_:
            for model_id in sorted(targets):
                say(f"model {model_id}: {outcome(chain, model_id)}")
            return 0
        if deadline is not None and time.monotonic() > deadline:
            waits = "; ".join(f"model {m}: {report.about(m, agent.now())}" for m in open_)
            raise ChainError(
                f"not settled within {timeout:g} s: {waits}. Run the same command "
                "again to go on (the salts are kept)"
            )
        time.sleep(interval)


def outcome(chain, model_id: int) -> str:
    status = ModelStatus(chain.call(chain.validators.functions.status(model_id)))
    return f"settled {status.word.replace('_', ' ')}" if status else "not settled"


def progress_lines(agent, report) -> list[tuple[object, str]]:
    """What a pass did and what each model waits for: (what the line is about, the line). The
    first item is the same for the same wait at every pass (the line counts down)."""
    lines = []
    if report.staked:
        lines.append(f"staked {fmt_eth(report.staked)}")
    lines += [f"{report.name(m)}: asked for its key" for m in report.requested]
    for a in report.committed:
        lines.append(
            f"{report.name(a.model_id)}: committed to hash 0x{a.observed_hash.hex()} "
            f"({'matches' if a.matches else 'MISMATCH'}), work digest "
            f"0x{a.work_digest.hex()}{'; ' + a.reason if a.reason else ''}"
        )
    lines += [f"{report.name(a.model_id)}: revealed" for a in report.revealed]
    for model_id, status in report.settled.items():
        lines.append(
            f"{report.name(model_id)}: settled {status.word.replace('_', ' ')}"
            if status
            else f"{report.name(model_id)}: round undecided (too little stake revealed); it commits "
            "again in the next round"
        )
    for model_id, (returned, forfeited) in report.released.items():
        lines.append(
            f"{report.name(model_id)}: seat released, {fmt_eth(returned)} of bonds returned"
            + (f", {fmt_eth(forfeited)} forfeited" if forfeited else "")
        )
    lines += [
        f"model {model_id}: claimed a validator's reward of {token.format(amount)} (credited to "
        "the validator's balance: `modex withdraw` with its wallet)"
        for model_id, token, amount in report.rewards
    ]
    for model_id, reason in sorted(report.retry.items()):
        lines.append(
            f"model {model_id}: not checked, nothing committed ({reason}); the next "
            "pass tries again"
        )
    for model_id, reason in sorted(report.refused.items()):
        lines.append(f"model {model_id}: refused: {reason}; the next pass tries again")
    said = [(line, line) for line in lines]
    return said + [
        (
            (model_id, report.waiting[model_id]),
            f"model {model_id}: {report.waiting[model_id].describe(agent.now())}",
        )
        for model_id in sorted(report.waiting)
    ]
