"""`modex buy MODEL_ID [--max-price AMOUNT]`: pay into escrow (in ETH or the model's ERC-20) and
wait for the wrapped key."""

from __future__ import annotations

from modex.commandline import add_command, add_node_options, positive_id
from node import market
from node.amounts import parse_amount
from node.errors import KeyDeliveryError
from node.stack import Stack
from node.tokens import payment_token


def register(sub) -> None:
    p = add_command(sub, "buy", run)
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument(
        "--max-price",
        metavar="AMOUNT",
        help="refuse to pay more than this, in the model's token, e.g. 0.1 or 5 mUSD "
        "(default: the current price)",
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
    with buy(), and wait for the seller's worker to deliver the wrapped key. A model priced in an
    ERC-20 token is paid in it: your balance is checked first, and the Marketplace is approved
    to take exactly the price (one more transaction) when it may not already. If the key does not
    come, the payment stays in escrow: after the delivery window run `modex refund PURCHASE_ID`."""
    session = Stack.from_args(args)
    chain = session.chain
    max_price = (
        parse_amount(args.max_price, payment_token(chain, args.model_id), "--max-price")
        if args.max_price
        else None
    )
    start = chain.block_number()
    purchase = market.buy(chain, session.signer, args.model_id, max_price=max_price)
    print(
        f"purchase {purchase.purchase_id}: paid {purchase.price_text} for model "
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
