"""`modex vote MODEL_ID SCORE`: rate a model you hold a licence for (1..5)."""

from __future__ import annotations

from modex.commandline import add_command, add_node_options, positive_id
from node import market
from node.stack import Stack


def register(sub) -> None:
    p = add_command(sub, "vote", run)
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument("score", metavar="SCORE", type=int, choices=range(1, 6))
    add_node_options(p)


def run(args) -> int:
    """One live vote per model and account, changeable. Only licence holders (buyers whose key
    was delivered) who paid more than 0 and do not own the model vote; each vote weighs the price
    paid for the licence, and the score is their weighted mean."""
    session = Stack.from_args(args)
    market.vote(session.chain, session.signer, args.model_id, args.score)
    score = market.score(session.chain, args.model_id)
    print(
        f"voted {args.score} for model {args.model_id}; its score is now {score.mean:.2f} "
        f"from {score.voters} voter(s), weighted by the price each paid"
    )
    return 0
