"""`modex vote MODEL_ID SCORE`: rate a model you hold a licence for (1..5)."""

from __future__ import annotations

from node.session import Session, add_node_options, positive_id


def register(sub) -> None:
    p = sub.add_parser(
        "vote", help="rate a model you bought (1..5)",
        description="One live vote per model and account, changeable; only licence holders "
        "(buyers whose key was delivered) may vote.")
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument("score", metavar="SCORE", type=int, choices=range(1, 6))
    add_node_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from node import market

    session = Session.from_args(args)
    market.vote(session.chain, session.signer, args.model_id, args.score)
    total, count = session.chain.call(session.chain.votes.functions.scoreOf(args.model_id))
    print(f"voted {args.score} for model {args.model_id}; its score is now "
          f"{total / count:.2f} from {count} vote(s)")
    return 0
