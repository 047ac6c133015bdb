"""`modex buy MODEL_ID [--max-price ETH]`: pay into escrow and wait for the wrapped key."""

from __future__ import annotations

from modex.commandline import add_command, add_node_options, positive_id
from node import market
from node.errors import KeyDeliveryError
from node.stack import Stack


def register(sub) -> None:
    p = add_command(sub, "buy", run)
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument(
        "--max-price",
        metavar="ETH",
        help="refuse to pay more than this (default: the current price)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for the key (0: do not wait; default 120)",
    )
    add_node_options(p)


def run(args) -> int:
    """Derive your X25519 key from the wallet (docs/formats.md §4), pay the price into escrow
    with buy(), and wait for the seller's worker to deliver the wrapped key. If it does not come,
    the payment stays in escrow: after the delivery window run `modex refund PURCHASE_ID`."""
    session = Stack.from_args(args)
    max_price = market.parse_eth(args.max_price, what="--max-price") if args.max_price else None
    chain = session.chain
    start = chain.block_number()
    purchase = market.buy(chain, session.signer, args.model_id, max_price=max_price)
    print(
        f"purchase {purchase.purchase_id}: paid {market.fmt_eth(purchase.price)} for model "
        f"{purchase.model_id} (tx {purchase.tx_hash})"
    )
    if args.wait <= 0:
        print(
            f"the key will arrive from the seller's worker; then run `modex fetch "
            f"{args.model_id} --out DIR`"
        )
        return 0
    try:
        market.wait_for_key(
            chain,
            purchase.purchase_id,
            timeout=args.wait,
            from_block=start,
            interval=min(1.0, session.config.poll_interval),
        )
    except KeyDeliveryError as exc:
        print(f"modex: {exc}")
        return 3
    print(f"key delivered; run `modex fetch {args.model_id} --out DIR`")
    return 0
