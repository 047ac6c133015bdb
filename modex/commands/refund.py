"""`modex refund PURCHASE_ID`: take back a payment whose key was not delivered in time, at once
when validators disputed the model (the Marketplace will never deliver it), or for a delivered
purchase whose model validators disputed within its challenge period."""

from __future__ import annotations

from web3.logs import DISCARD

from modex.commandline import add_command, add_node_options, positive_id
from node import market
from node.amounts import fmt_amount
from node.stack import Stack


def register(sub) -> None:
    p = add_command(sub, "refund", run)
    p.add_argument("purchase_id", metavar="PURCHASE_ID", type=positive_id)
    add_node_options(p)


def run(args) -> int:
    """Credit the price of a purchase back to you: an undelivered one once the delivery window
    has passed, or at once when validators disputed the model (its key can no longer be
    delivered); a delivered one when validators disputed the model within the sale's challenge
    period, while the seller's revenue is still held (your licence and vote are revoked).
    Anything else is refused with the reason and when a refund would be possible, before anything
    is sent. `modex withdraw` then sends the money (ETH or the token it was paid in) to your
    wallet."""
    session = Stack.from_args(args)
    chain = session.chain
    receipt = market.refund(chain, session.signer, args.purchase_id)
    (refunded,) = chain.marketplace.events.Refunded().process_receipt(receipt, errors=DISCARD)
    amount = fmt_amount(refunded["args"]["amount"], chain.token(refunded["args"]["token"]))
    print(
        f"purchase {args.purchase_id} refunded: {amount} credited to you; run `modex withdraw` "
        "to receive it"
    )
    return 0
