"""`modex terms MODEL_ID [--price AMOUNT] [--token ADDRESS|--stablecoin|--eth]
[--subscription PRICE/PERIOD|--no-subscription]`: change what a listed model sells for
(node/subscriptions.py's set_terms)."""

from __future__ import annotations

from modex.commandline import add_command, add_node_options, positive_id
from modex.commands.publish import add_payment_options, payment_token_of, terms_of
from node.amounts import ETH, parse_amount
from node.errors import InputError
from node.fetch import sale_terms
from node.stack import Stack
from node.subscriptions import set_terms, subscription_offer


def register(sub) -> None:
    p = add_command(sub, "terms", run)
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument(
        "--price",
        metavar="AMOUNT",
        help="new price of the weights, in the model's token (default: unchanged; required "
        "with a new token)",
    )
    add_payment_options(p, eth=True)
    p.add_argument(
        "--no-subscription",
        action="store_true",
        help="stop offering subscriptions (those paid run to their end)",
    )
    add_node_options(p)


def run(args) -> int:
    """Change what your listed model sells for: its price, the token it is priced in (--token,
    --stablecoin, or --eth for ETH) and its subscription offer (--subscription PRICE/PERIOD, or
    --no-subscription). Only what changes is sent. A new token needs a new --price in its units:
    the price is raised to the registry's maximum before the token changes, so the model is never
    on sale at a number meant for another token."""
    session = Stack.from_args(args)
    chain = session.chain
    offer = subscription_offer(chain, args.model_id)
    token = ETH if args.eth else payment_token_of(chain, args) or offer.token
    if token.address != offer.token.address and args.price is None:
        raise InputError(
            f"model {args.model_id} is priced in {offer.token.symbol}: pricing it in "
            f"{token.symbol} needs a new --price in {token.symbol}",
            what="--price",
        )
    if args.subscription and args.no_subscription:
        raise InputError("give either --subscription or --no-subscription, not both")
    price = (
        parse_amount(args.price, token, "--price")
        if args.price is not None
        else sale_terms(chain, args.model_id).price
    )
    subscription = terms_of(args.subscription, token) if args.subscription else None
    if args.no_subscription:
        subscription = (0, 0)
    sent = set_terms(
        chain, session.signer, args.model_id, token=token, price=price, subscription=subscription
    )
    now = subscription_offer(chain, args.model_id)
    print(
        f"model {args.model_id}: {token.format(sale_terms(chain, args.model_id).price)}; "
        f"subscription: {now.text} ({len(sent)} transaction(s) sent)"
    )
    return 0
