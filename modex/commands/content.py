"""`modex hash|seal|unseal`: the model hash and the sealed archive by hand (§4.1-4.2).

These exist so that anyone can check what Modex wrote with nothing but this page and docs/formats.md:
re-hash a model directory, and seal or decrypt an archive with its content key. The key commands
(wrap-key, unwrap-key, derive-key) are in modex/commands/keys.py.
"""

from __future__ import annotations

import argparse
import os
import sys

from node.content.manifest import build_manifest, check_model_hash
from node.content.seal import seal_file, unseal_file
from node.errors import SealError

_KEY_NOTE = (
    "(64 hex chars; `openssl rand -hex 32` makes one. A command line is visible to other "
    "local users through ps: prefer a private machine.)"
)


def hex_bytes(nbytes: int, what: str):
    def parse(text: str) -> bytes:
        raw = text[2:] if text[:2].lower() == "0x" else text
        try:
            value = bytes.fromhex(raw)
        except ValueError:
            value = b""
        if len(value) != nbytes:
            # Never echo the value: it may be a key.
            raise argparse.ArgumentTypeError(
                f"{what} must be {nbytes} bytes as {2 * nbytes} hex chars"
            )
        return value

    return parse


def non_negative_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def key_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key-hex",
        type=hex_bytes(32, "--key-hex"),
        required=True,
        help="the 32-byte content key " + _KEY_NOTE,
    )


def register(sub) -> None:
    p = sub.add_parser(
        "hash",
        description="Hash every regular file under DIR (in parallel) and print the model hash "
        "as 0x-hex: sha256 of the canonical manifest JSON. Symlinks, devices and FIFOs "
        "are refused.",
        epilog="Check by hand: `modex hash DIR --manifest | sha256sum` prints the same hash.",
    )
    p.add_argument("dir", metavar="DIR", help="the model directory")
    p.add_argument(
        "--manifest",
        action="store_true",
        help="print the canonical manifest bytes instead (exactly, no trailing newline)",
    )
    p.add_argument(
        "--check", metavar="0xHASH", help="exit with an error unless the model hash equals this one"
    )
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=None,
        help="hashing threads (default: CPU cores)",
    )
    p.set_defaults(func=cmd_hash)

    p = sub.add_parser(
        "seal",
        description="Encrypt IN into OUT as a MDXSEAL1 sealed archive (AES-256-GCM, chunked). "
        "OUT is written to a temporary file and renamed when complete.",
    )
    p.add_argument("input", metavar="IN", help="the file to seal (e.g. a model tar)")
    p.add_argument("output", metavar="OUT", help="the sealed archive to write")
    key_arg(p)
    p.add_argument(
        "--chunk-size",
        type=non_negative_int,
        default=1 << 20,
        help="plaintext bytes per chunk (default 1048576)",
    )
    p.set_defaults(func=cmd_seal)

    p = sub.add_parser(
        "unseal",
        description="Decrypt and authenticate IN into OUT. Nothing is written at OUT unless every "
        "chunk authenticates (wrong key, truncation, reordering, extension or a flipped "
        "bit is an error).",
    )
    p.add_argument("input", metavar="IN", help="the sealed archive")
    p.add_argument("output", metavar="OUT", help="where to write the plaintext")
    key_arg(p)
    p.set_defaults(func=cmd_unseal)


def cmd_hash(args) -> int:
    manifest = build_manifest(args.dir, workers=args.workers)
    if args.check:
        check_model_hash(manifest, args.check)
    if args.manifest:
        sys.stdout.flush()
        sys.stdout.buffer.write(manifest.canonical_bytes())
        sys.stdout.buffer.flush()
    else:
        print(manifest.model_hash_hex)
    return 0


def cmd_seal(args) -> int:
    _check_input(args.input)
    size = seal_file(args.key_hex, args.input, args.output, chunk_size=args.chunk_size)
    print(f"sealed {args.input} -> {args.output} ({size} bytes)")
    return 0


def cmd_unseal(args) -> int:
    _check_input(args.input)
    size = unseal_file(args.key_hex, args.input, args.output)
    print(f"unsealed {args.input} -> {args.output} ({size} bytes)")
    return 0


def _check_input(path: str) -> None:
    if not os.path.isfile(path):
        raise SealError(f"{path} is not a file: give the path of the file to read")
