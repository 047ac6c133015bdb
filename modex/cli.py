"""The `modex` command line: one entry point, each subcommand defined in a module of
modex/commands/.

A command module defines ``register(subparsers)``, which adds its subcommands with
``set_defaults(func=...)``; a handler returns an exit code (or None for 0). Only the module of
the command that runs is imported: `modex --help` lists the commands from ``COMMANDS`` below, so
commands that need no chain (hash, seal, cid, ...) start without loading web3, torch or flask.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from node.errors import ModexError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # every process of a command
log = logging.getLogger(__name__)

# Every subcommand, in the order `modex --help` lists them: the module of modex/commands/ that
# defines its arguments and handler, and its one-line help. tests/cli/test_cli.py checks that
# each module registers exactly the commands named here.
COMMANDS: dict[str, tuple[str, str]] = {
    "account": ("account", "create, import or show the wallet keystore"),
    "buy": ("buy", "buy a licence for a model (in ETH or its token) and wait for its key"),
    "cid": ("cid", "print the IPFS CID of a file (as `ipfs add` computes it)"),
    "store": ("store", "put/get content, CAR export/import, gateway, local IPFS daemon"),
    "hash": ("content", "print a model directory's model hash (docs/formats.md §2)"),
    "seal": ("content", "encrypt a file into a sealed archive (MDXSEAL1, §4.2)"),
    "unseal": ("content", "decrypt a sealed archive (MDXSEAL1, §4.2)"),
    "wrap-key": ("keys", "wrap a content key to a recipient (HPKE, §4.3); prints 160 hex chars"),
    "unwrap-key": ("keys", "unwrap a wrapped content key (HPKE, §4.3); prints the key hex"),
    "derive-key": ("keys", "print the X25519 public key a wallet derives (§4.3)"),
    "feedback": (
        "feedback",
        "correct a model's answer privately (its seller alone reads it); list, withdraw, read",
    ),
    "fetch": ("fetch", "download, decrypt and verify a model you bought"),
    "index": ("index", "sync the local index of listings, purchases, votes and attestations"),
    "train": ("ml", "fine-tune a sentiment classifier from the packaged base model"),
    "evaluate": ("ml", "reproducible metrics of a model directory on a named eval set"),
    "serve": ("serve", "serve paid, EIP-712-signed inference for a model directory"),
    "call": ("call", "ask a served model: sign the request with your wallet, print its answers"),
    "channel": (
        "channel",
        "pay per call: open, top-up, extend, list, reclaim a channel; price, claim, withdraw "
        "(seller)",
    ),
    "models": ("models", "list the models for sale (from the local index)"),
    "publish": ("publish", "seal, pin and list a model directory for sale"),
    "claim": ("publish", "claim a listed model's work digest (when its publish could not)"),
    "terms": ("terms", "change a listed model's price, its token or its subscription offer"),
    "retrain": (
        "retrain",
        "retrain your model on its buyers' feedback; publish it if the eval set does not regress",
    ),
    "refund": (
        "refund",
        "refund an undelivered purchase after the delivery window (at once if "
        "validators disputed the model), or a delivered one whose model was disputed "
        "within its challenge period",
    ),
    "review": ("review", "review a model you bought: a score (your vote) and a signed text"),
    "report": ("review", "report a model you have access to, with a signed reason"),
    "subscribe": ("subscribe", "pay for time-limited access to a model's service, in its token"),
    "up": ("up", "run the whole exchange (chain, store, worker, UI) on this machine"),
    "versions": ("versions", "a model's versions (hash, CID, time, validation); its update window"),
    "validate": (
        "validate",
        "stake, get listings' keys, re-hash and evaluate them, commit and reveal",
    ),
    "validator": ("validator", "a validator's wallet: stake, name the agent's attester key, show"),
    "vote": ("vote", "rate a model you bought (1..5)"),
    "withdraw": (
        "withdraw",
        "withdraw what the marketplace credited you, in ETH and each token (sales once released)",
    ),
    "worker": ("worker", "deliver wrapped keys to buyers and validators of your models"),
}


def _top_parser():
    """The `modex` parser without its commands, and the subparsers action to add them to."""
    parser = argparse.ArgumentParser(
        prog="modex", description="Modex: a blockchain-backed exchange for trained AI models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    return parser, parser.add_subparsers(dest="command", metavar="COMMAND")


def build_command_index() -> argparse.ArgumentParser:
    """`modex` with every command's name and one-line help but none of its arguments: enough to
    print `modex --help` and to find the command that runs, without importing a command module."""
    parser, sub = _top_parser()
    for name, (_module, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def command_module(command: str):
    """The module of modex/commands/ that defines ``command``."""
    # The dispatcher's one deliberate late import: a command's module (and web3, torch or flask
    # behind it) is loaded only when that command runs.
    return importlib.import_module(f"{__package__}.commands.{COMMANDS[command][0]}")


def build_parser(command: str) -> argparse.ArgumentParser:
    """`modex` with the full arguments of ``command`` (and of the commands defined beside it)."""
    parser, sub = _top_parser()
    command_module(command).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    argv = sys.argv[1:] if argv is None else argv
    index = build_command_index()
    chosen = index.parse_known_args(argv)[0]
    if chosen.command is None:
        index.print_help()
        return 2
    args = build_parser(chosen.command).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=LOG_FORMAT,
    )
    try:
        code = args.func(args)
    except ModexError as exc:
        # A person reads this: the message says what went wrong and what to do; no traceback.
        print(f"modex: error: {exc}", file=sys.stderr)
        log.debug("details", exc_info=True)
        return 1
    except KeyboardInterrupt:
        print("modex: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
