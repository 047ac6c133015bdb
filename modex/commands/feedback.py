"""`modex feedback MODEL_ID`: correct a model's answer privately (its seller alone reads it),
list or withdraw what you sent, and, as the seller, read what its users sent."""

from __future__ import annotations

import json
from dataclasses import asdict

from modex.commandline import add_command, add_node_options, positive_id
from node import feedback
from node.stack import Stack


def register(sub) -> None:
    p = add_command(sub, "feedback", run)
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--text", help="send: the input the model answered wrongly")
    mode.add_argument("--withdraw", metavar="CID", help="withdraw consent for an item you sent")
    mode.add_argument("--list", action="store_true", help="the items you sent on this model")
    mode.add_argument(
        "--read", action="store_true", help="seller: decrypt the items not withdrawn (JSON lines)"
    )
    correction = p.add_mutually_exclusive_group()
    correction.add_argument("--label", type=int, help="the right label id (0, 1, ...)")
    correction.add_argument("--note", help="what is wrong with the answer, in words")
    p.add_argument("--output", default="", help="what the model answered (its label)")
    p.add_argument(
        "--version", type=positive_id, help="the model version that answered (default: latest)"
    )
    add_node_options(p)


def run(args) -> int:
    """Send: the item (input, answer, right label or note, you, the time) is encrypted to the
    seller's key from the listing's metadata, pinned, and only its CID is anchored on-chain
    (Votes.sendFeedback; a licence or live subscription is needed). --withdraw: the seller's
    loop skips the item from then on. --read: the seller's decrypted items, one JSON per line."""
    session = Stack.from_args(args)
    chain, model_id = session.chain, args.model_id
    if args.read:
        for item in feedback.read_feedback(chain, session.store, session.signer, model_id):
            print(json.dumps(asdict(item), sort_keys=True))
        return 0
    if args.list:
        mine = feedback.anchors(chain, model_id, sender=session.signer.address)
        for cid, _sender, withdrawn in mine:
            print(f"{cid}  {'withdrawn' if withdrawn else 'shared with the seller'}")
        if not mine:
            print(f"you sent no feedback on model {model_id}")
        return 0
    if args.withdraw:
        tx = feedback.withdraw_feedback(chain, session.signer, model_id, args.withdraw)
        print(f"withdrawn: the seller's loop skips {args.withdraw} from now on (tx {tx})")
        return 0
    sent = feedback.send_feedback(
        chain,
        session.store,
        session.signer,
        model_id,
        text=args.text,
        output=args.output,
        label=args.label,
        note=args.note,
        version=args.version,
    )
    print(
        f"feedback sent privately to model {model_id}'s seller: item {sent.cid} (encrypted to "
        f"the seller's key; only this CID is public), anchored in {sent.tx_hash}. Withdraw it "
        f"with `modex feedback {model_id} --withdraw {sent.cid}`"
    )
    return 0
