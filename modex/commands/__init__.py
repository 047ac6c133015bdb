"""Subcommands of `modex`: each module here has ``register(subparsers)`` (see modex/cli.py)."""

from __future__ import annotations

import argparse


def tcp_port(text: str) -> int:
    """An argparse type for --port: 0..65535 (werkzeug binds 70000 as 70000 mod 65536 = 4464)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port 0..65535 (0 = any free port)")
    return int(text)
