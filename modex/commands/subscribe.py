"""`modex subscribe MODEL_ID --periods N [--max-price AMOUNT]`: pay for time-limited access to a
model's service (node/subscriptions.py)."""

from __future__ import annotations

import argparse

from modex.commandline import add_command, add_node_options, positive_id
from node.amounts import parse_amount
from node.revert_sentences import when
from node.stack import Stack
from node.subscriptions import subscribe, subscription_offer


def periods(text: str) -> int:
    """An argparse type for --periods: a whole number, 1 or more."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of periods: write 1 or more")
    return int(text)


def register(sub) -> None:
    p = add_command(sub, "subscribe", run)
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument(
        "--periods",
        type=periods,
        default=1,
        metavar="N",
        help="how many of the seller's periods to pay for (default 1)",
    )
    p.add_argument(
        "--max-price",
        metavar="AMOUNT",
        help="refuse to pay more than this in all, in the model's token, e.g. 15 mUSD "
        "(default: the periods at the current price)",
    )
    add_node_options(p)


def run(args) -> int:
    """Subscribe to a model's service: pay N periods of the seller's subscription terms (in the
    token the model is priced in; an ERC-20 is approved first, exactly the total) and call the
    service until the subscription ends. Subscribing again extends it from its end. A
    subscription buys calls to the seller's running service, not the weights: `modex buy` buys
    those. Your balance is checked before anything is sent."""
    session = Stack.from_args(args)
    chain = session.chain
    terms = subscription_offer(chain, args.model_id)
    max_price = parse_amount(args.max_price, terms.token, "--max-price") if args.max_price else None
    done = subscribe(chain, session.signer, args.model_id, args.periods, max_price=max_price)
    print(
        f"subscribed to model {done.model_id} until {when(done.expires_at)}: paid "
        f"{done.paid_text} for {done.periods} period(s) of {terms.text} (tx {done.tx_hash})"
    )
    print(f"call it with `modex call {done.model_id} TEXT...`")
    return 0
