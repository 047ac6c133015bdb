"""`modex review MODEL_ID --score N --text ...` and `modex report MODEL_ID --reason ...`: a
licence holder's signed review, and a report of a model by an account with access."""

from __future__ import annotations

from modex.commandline import add_command, add_node_options, positive_id
from node import market, reviews
from node.stack import Stack


def register(sub) -> None:
    p = add_command(sub, "review", run_review)
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument("--score", type=int, required=True, choices=range(1, 6), help="1..5 stars")
    p.add_argument(
        "--text", required=True, help=f"what you found (up to {reviews.MAX_TEXT_CHARS} characters)"
    )
    p.add_argument(
        "--version", type=positive_id, help="the version you reviewed (default: the latest)"
    )
    add_node_options(p)
    p = add_command(sub, "report", run_report)
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument(
        "--reason", required=True, help=f"why (up to {reviews.MAX_TEXT_CHARS} characters)"
    )
    add_node_options(p)


def run_review(args) -> int:
    """Review a model you hold a voting licence for (bought from someone else, at a price above
    0): the review (score, text, the version, you) is signed by your wallet (EIP-712), pinned to
    the store, and anchored with Votes.review. Its score counts as your vote (and replaces it)."""
    session = Stack.from_args(args)
    done = reviews.review(
        session.chain,
        session.signer,
        session.store,
        args.model_id,
        args.score,
        args.text,
        version=args.version,
    )
    score = market.score(session.chain, args.model_id)
    print(
        f"reviewed model {args.model_id} ({args.score}★, review {done.cid}); its score is now "
        f"{score.mean:.2f} from {score.voters} voter(s), weighted by the price each paid"
    )
    return 0


def run_report(args) -> int:
    """Report a model you have access to (a licence or a live subscription): the reason, signed
    by your wallet (EIP-712), is pinned to the store and anchored with Votes.report; the market
    shows how many accounts reported the model."""
    session = Stack.from_args(args)
    done = reviews.report(session.chain, session.signer, session.store, args.model_id, args.reason)
    print(f"reported model {args.model_id} (reason {done.cid})")
    return 0
