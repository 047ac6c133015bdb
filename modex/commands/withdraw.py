"""`modex withdraw`: release your sales past their challenge period, then send your credited
balance (sales, fees, refunds, rewards) to your wallet."""

from __future__ import annotations

from modex.commandline import add_command, add_node_options
from modex.commands.models import open_index
from node import market
from node.stack import Stack


def register(sub) -> None:
    p = add_command(sub, "withdraw", run)
    add_node_options(p)


def run(args) -> int:
    """Pull payment. A sale's revenue is held for the Marketplace's challenge period after its
    key is delivered (a dispute within it refunds the buyer); this first releases your models'
    sales whose period is over (one releaseRevenue transaction each, found through the local
    index), then sends everything credited to you (sales, fees, refunds, validator rewards) to
    your wallet, and says what is still held and until when."""
    session = Stack.from_args(args)
    index = open_index(session, metadata=False)
    try:
        sales = [p["purchase_id"] for p in index.unreleased_sales(session.signer.address)]
    finally:
        index.close()
    done = market.withdraw(session.chain, session.signer, sales)
    if done.released:
        print(
            f"released {len(done.released)} sale(s) past their challenge period "
            f"({market.fmt_eth(sum(s.amount for s in done.released))})"
        )
    print(f"withdrew {market.fmt_eth(done.amount)} to {session.signer.address}")
    if held := done.earnings.held_text():
        print(f"still held: {held}")
    if refundable := done.earnings.refundable_text():
        print(refundable)
    return 0
