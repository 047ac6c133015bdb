"""`modex fetch MODEL_ID --out DIR [--version N]`: download, decrypt and verify a bought model."""

from __future__ import annotations

from pathlib import Path

from modex.commandline import add_command, add_node_options, positive_id
from modex.progress import ProgressBars
from node.fetch import fetch_model
from node.stack import Stack


def register(sub) -> None:
    p = add_command(sub, "fetch", run)
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="new (or empty) folder for the model"
    )
    p.add_argument(
        "--purchase", type=positive_id, metavar="ID", help="which purchase (default: latest)"
    )
    p.add_argument(
        "--version",
        type=positive_id,
        metavar="N",
        help="which version of the model (default: the latest you hold a key for: your "
        "purchase's, or a later one the seller delivered within the listing's update window); "
        "it is verified against that version's on-chain hash",
    )
    add_node_options(p)


def run(args) -> int:
    """Read your delivered wrapped key from the chain, unwrap it, stream the ciphertext from
    IPFS, decrypt and extract it into a temporary folder beside DIR, and rename it to DIR only if
    its model hash equals the one listed on-chain for that version (`modex versions MODEL_ID`).
    On any mismatch nothing is written to DIR."""
    session = Stack.from_args(args)
    with ProgressBars() as bars:
        result = fetch_model(
            session.chain,
            session.signer,
            session.store,
            args.model_id,
            args.out,
            purchase_id=args.purchase,
            version=args.version,
            progress=bars,
        )
    print(
        f"model {result.model_id} version {result.version} verified (hash {result.model_hash}): "
        f"{result.files} files, "
        f"{result.size} bytes in {result.out_dir}"
    )
    return 0
