"""The `modex` command line: one entry point, subcommands registered by node/commands/*.

Each module in node/commands/ defines ``register(subparsers)`` and adds its subcommands with
``set_defaults(func=...)``; a handler returns an exit code (or None for 0). Front ends that need
heavy imports (app/, ml/) are imported lazily inside their handlers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from node import commands
from node.errors import ModexError

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modex", description="Modex: a blockchain-backed exchange for trained AI models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
