"""What the command modules share: a subcommand described by its handler's docstring, argparse
types for ids and seconds, the node options every command that reaches the node takes, running a
follower until it is signalled to stop, and the inference service's default address.

Nothing here imports more than the standard library: `modex hash` and the other commands that
need no chain load it without slowing their start.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

# The node options: (flag, metavar, help). Each overrides the configuration file;
# node.stack.config_from_args reads them into a Config.
NODE_OPTIONS = (
    (
        "--config",
        "FILE",
        "TOML configuration file (default $MODEX_CONFIG or <data dir>/config.toml)",
    ),
    ("--data-dir", "DIR", "node data folder (default .modex or ~/.modex)"),
    (
        "--chain",
        "URL",
        'a JSON-RPC URL (the local chain\'s is printed by `modex up`) or "embedded"',
    ),
    ("--ipfs", "URL", '"embedded" or a Kubo RPC API URL'),
    ("--keystore", "FILE", "wallet keystore (default <data dir>/keystore.json)"),
    ("--deployment", "FILE", "deployment record (default deployments/<chainId>.json)"),
)


# Where `modex serve` listens unless told otherwise, and so where `modex call` looks for it.
SERVE_HOST = "127.0.0.1"
SERVE_PORT = 8600


def service_url(host: str = SERVE_HOST, port: int = SERVE_PORT) -> str:
    """The base URL of the inference service `modex serve` runs on ``host``:``port``."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def add_command(sub, name: str, func, **options) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` to the subparsers ``sub``: run by ``func`` and described by
    its docstring (``options``: more arguments of add_parser, e.g. its one-line help)."""
    parser = sub.add_parser(name, description=func.__doc__, **options)
    parser.set_defaults(func=func)
    return parser


def add_node_options(
    parser: argparse.ArgumentParser, *flags: str, **changed: tuple[str, str]
) -> None:
    """Add the node options ``flags`` (default: all of NODE_OPTIONS) to ``parser`` in a "node"
    group; ``changed`` gives an option (by dest, e.g. ``chain=``) its own (metavar, help) where
    a command means more by it."""
    group = parser.add_argument_group("node")
    for flag, metavar, text in NODE_OPTIONS:
        if not flags or flag in flags:
            metavar, text = changed.get(flag[2:].replace("-", "_"), (metavar, text))
            group.add_argument(flag, metavar=metavar, help=text)


def positive_id(text: str) -> int:
    """An argparse type for model and purchase ids: a whole number, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an id: it must be a whole number, "
            "1 or more (`modex models` lists the model ids)"
        )
    return value


def positive_seconds(text: str) -> float:
    """An argparse type for a poll interval: a finite number of seconds more than 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds more than 0")
    return value


def add_follower_options(parser: argparse.ArgumentParser, *, once: str, state: str, group=None):
    """The options of a command that follows the chain pass after pass (`modex worker`, `modex
    validate`): --once (help ``once``; added to ``group`` when given, e.g. a mutually exclusive
    one), --interval and --state (help ``state``: what the file keeps and where by default)."""
    (group or parser).add_argument("--once", action="store_true", help=once)
    parser.add_argument(
        "--interval",
        type=positive_seconds,
        metavar="SECONDS",
        help="seconds between passes (default: poll_interval from the config)",
    )
    parser.add_argument("--state", type=Path, metavar="FILE", help=state)


def run_until_signalled(loop, interval: float) -> int:
    """Run ``loop(stop, interval=...)`` until SIGTERM or SIGINT sets ``stop``; exit code 0."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    loop(stop, interval=interval)
    return 0
