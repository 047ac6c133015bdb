"""`modex cid FILE`: the IPFS content identifier of a file (§4.4).

It prints the CID `ipfs add` gives a file under a profile, without storing anything, so anyone
can check a listing's content CID.
"""

from __future__ import annotations

import argparse
import sys

from modex.commandline import add_command
from node.content.cid import DEFAULT_PROFILE, PROFILES, cid_of_file, cid_of_stream
from node.errors import InputError

_PROFILE_HELP = (
    "CID profile (docs/formats.md §5): unixfs-v1-2025 = CIDv1, raw leaves, 1 MiB chunks, 1024 links "
    "(default); kubo-v1 = `ipfs add --cid-version=1` (256 KiB, 174 links); kubo-v0 = `ipfs add` "
    "(CIDv0, 256 KiB, 174 links)"
)


def profile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=list(PROFILES), default=DEFAULT_PROFILE, help=_PROFILE_HELP)


def cmd_cid(args) -> int:
    """Compute the UnixFS CID that Kubo's `ipfs add` gives FILE under a profile, streaming,
    without storing anything. CIDv1 prints in base32 (b...), CIDv0 in base58 (Qm...). FILE '-'
    reads standard input."""
    if args.file == "-":
        print(cid_of_stream(sys.stdin.buffer, args.profile))
    else:
        try:
            print(cid_of_file(args.file, args.profile))
        except OSError as exc:
            raise InputError(f"cannot read {args.file}: {exc.strerror}") from None
    return 0


def register(sub) -> None:
    p = add_command(sub, "cid", cmd_cid)
    p.add_argument("file", metavar="FILE")
    profile_arg(p)
