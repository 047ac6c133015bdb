"""`modex versions MODEL_ID [--update-window PERIOD|forever|0] [--json]`: a listing's versions
(number, model hash, metadata CID, when published, validation status) and, for its owner, how
long buyers receive new ones (node/versions.py)."""

from __future__ import annotations

import datetime as dt
import json

from modex.commandline import add_command, add_node_options, positive_id
from node import versions
from node.amounts import parse_period
from node.stack import Stack


def register(sub) -> None:
    p = add_command(sub, "versions", run)
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument(
        "--update-window",
        metavar="PERIOD",
        help="(owner) how long after a purchase its buyer receives new versions: a period "
        "such as 90d, 0 for only the version bought, or forever",
    )
    p.add_argument("--json", action="store_true", help="print the versions as JSON")
    add_node_options(p)


def update_window_of(text: str) -> int:
    """--update-window: "forever", "0" or a period ("90d") -> seconds."""
    word = text.strip().lower()
    if word == "forever":
        return versions.FOREVER
    if word == "0":
        return 0
    return parse_period(word, "--update-window")


def run(args) -> int:
    """List the versions of MODEL_ID: version 1 is the listing, each later one new weights its
    owner published (`modex publish --new-version`). Each row's status is its own validation:
    the validators' rounds attest one version, every other one shows unverified. With
    --update-window, the owner sets how long after a purchase its buyer receives new versions."""
    session = Stack.from_args(args)
    chain = session.chain
    if args.update_window is not None:
        seconds = update_window_of(args.update_window)
        tx = versions.set_update_window(chain, session.signer, args.model_id, seconds)
        if not args.json:  # the JSON below carries the window
            words = versions.update_window_words(seconds)
            print(f"model {args.model_id}: update window set to {words} ({tx})")
    rows = versions.list_versions(chain, args.model_id)
    window = int(chain.call(chain.registry.functions.updateWindow(args.model_id)))
    table = [
        {
            "version": v.number,
            "model_hash": "0x" + v.model_hash.hex(),
            "metadata_cid": v.metadata_cid,
            "published_at": v.published_at,
            "status": versions.status_of(chain, args.model_id, v.number).word,
        }
        for v in rows
    ]
    if args.json:
        print(json.dumps({"model_id": args.model_id, "update_window": window, "versions": table}))
        return 0
    print(
        f"model {args.model_id}: {len(rows)} version(s); buyers receive new ones: "
        f"{versions.update_window_words(window)}"
    )
    print(f"{'version':>7}  {'published at (UTC)':19}  {'status':16}  model hash / metadata CID")
    for row in table:
        when = dt.datetime.fromtimestamp(row["published_at"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{row['version']:>7}  {when:19}  {row['status']:16}  {row['model_hash']}")
        print(f"{'':>7}  {'':19}  {'':16}  {row['metadata_cid']}")
    return 0
