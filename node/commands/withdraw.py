"""`modex withdraw`: send your credited balance (sales, fees, refunds) to your wallet."""

from __future__ import annotations

from node.session import Session, add_node_options


def register(sub) -> None:
    p = sub.add_parser(
        "withdraw", help="withdraw what the marketplace credited you",
        description="Pull payment: sales revenue, fees, refunds and validator rewards are "
        "credited to your account on the Marketplace; this sends them to your wallet.")
    add_node_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from node import market

    session = Session.from_args(args)
    amount = market.withdraw(session.chain, session.signer)
    print(f"withdrew {market.fmt_eth(amount)} to {session.signer.address}")
    return 0
