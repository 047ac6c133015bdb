"""`modex withdraw [--token ADDRESS]`: release your sales past their challenge period, then send
your credited balance (sales, subscriptions, fees, refunds, rewards) to your wallet: in ETH and
every token you were credited in, or in the one token named."""

from __future__ import annotations

from modex.commandline import add_command, add_node_options
from modex.commands.models import open_index
from node import market
from node.amounts import fmt_amount
from node.stack import Stack
from node.tokens import known_token


def register(sub) -> None:
    p = add_command(sub, "withdraw", run)
    p.add_argument(
        "--token",
        metavar="ADDRESS",
        help="withdraw only this ERC-20 token (0x000…000: only ETH); default: ETH and every "
        "token the index knows that you have something to withdraw in",
    )
    add_node_options(p)


def run(args) -> int:
    """Pull payment. A sale's revenue is held for the Marketplace's challenge period after its
    key is delivered (a dispute within it refunds the buyer); this first releases your models'
    sales whose period is over (one releaseRevenue transaction each, found through the local
    index), then sends everything credited to you (sales, subscriptions, fees, refunds,
    validator rewards) to your wallet, one withdrawal per token, and says what is still held and
    until when. Without --token it withdraws ETH and every token a model was priced in that you
    have something to withdraw in, naming each."""
    session = Stack.from_args(args)
    chain, signer = session.chain, session.signer
    index = open_index(session, metadata=False)
    try:
        sales = [p["purchase_id"] for p in index.unreleased_sales(signer.address)]
        tokens = (
            [known_token(chain, args.token, "--token")]
            if args.token is not None
            else index.payment_tokens()
        )
    finally:
        index.close()
    if len(tokens) == 1:
        done, waiting = [market.withdraw(chain, signer, sales, tokens[0])], []
    else:
        done, waiting = market.withdraw_each(chain, signer, sales, tokens)
    for withdrawal in done:
        if withdrawal.released:
            released = sum(s.amount for s in withdrawal.released)
            print(
                f"released {len(withdrawal.released)} sale(s) past their challenge period "
                f"({fmt_amount(released, withdrawal.token)})"
            )
        print(f"withdrew {fmt_amount(withdrawal.amount, withdrawal.token)} to {signer.address}")
    for found in [w.earnings for w in done] + waiting:
        if held := found.held_text():
            print(f"still held: {held}")
        if refundable := found.refundable_text():
            print(refundable)
    return 0
