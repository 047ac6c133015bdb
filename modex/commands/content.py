"""`modex hash|seal|unseal|wrap-key|unwrap-key|derive-key`: the content formats by hand (§4.1-4.3).

These exist so that anyone can check what Modex wrote with nothing but this page and DESIGN.md:
re-hash a model directory, decrypt a sealed archive with its key, wrap or unwrap a content key
for a purchase, and show the X25519 key a wallet derives.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from node.errors import KeystoreError

log = logging.getLogger(__name__)

_KEY_NOTE = ("(64 hex chars; `openssl rand -hex 32` makes one. A command line is visible to other "
             "local users through ps: prefer a private machine.)")


def _hex_bytes(nbytes: int, what: str):
    def parse(text: str) -> bytes:
        raw = text[2:] if text[:2].lower() == "0x" else text
        try:
            value = bytes.fromhex(raw)
        except ValueError:
            value = b""
        if len(value) != nbytes:
            # Never echo the value: it may be a key.
            raise argparse.ArgumentTypeError(f"{what} must be {nbytes} bytes as {2 * nbytes} hex chars")
        return value

    return parse


def _uint(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _purchase_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chain-id", type=_uint, required=True, help="the chain's id (e.g. 31337)")
    p.add_argument("--marketplace", required=True,
                   help="the Marketplace contract address (0x + 40 hex)")
    p.add_argument("--purchase-id", type=_uint, required=True, help="the purchase id on that marketplace")


def _key_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-hex", type=_hex_bytes(32, "--key-hex"), required=True,
                   help="the 32-byte content key " + _KEY_NOTE)


def register(sub) -> None:
    p = sub.add_parser(
        "hash",
        description="Hash every regular file under DIR (in parallel) and print the model hash "
                    "as 0x-hex: sha256 of the canonical manifest JSON. Symlinks, devices and FIFOs "
                    "are refused.",
        epilog="Check by hand: `modex hash DIR --manifest | sha256sum` prints the same hash.",
    )
    p.add_argument("dir", metavar="DIR", help="the model directory")
    p.add_argument("--manifest", action="store_true",
                   help="print the canonical manifest bytes instead (exactly, no trailing newline)")
    p.add_argument("--check", metavar="0xHASH",
                   help="exit with an error unless the model hash equals this one")
    p.add_argument("--workers", type=_uint, default=None, help="hashing threads (default: CPU cores)")
    p.set_defaults(func=cmd_hash)

    p = sub.add_parser(
        "seal",
        description="Encrypt IN into OUT as a MDXSEAL1 sealed archive (AES-256-GCM, chunked). "
                    "OUT is written to a temporary file and renamed when complete.",
    )
    p.add_argument("input", metavar="IN", help="the file to seal (e.g. a model tar)")
    p.add_argument("output", metavar="OUT", help="the sealed archive to write")
    _key_arg(p)
    p.add_argument("--chunk-size", type=_uint, default=1 << 20,
                   help="plaintext bytes per chunk (default 1048576)")
    p.set_defaults(func=cmd_seal)

    p = sub.add_parser(
        "unseal",
        description="Decrypt and authenticate IN into OUT. Nothing is written at OUT unless every "
                    "chunk authenticates (wrong key, truncation, reordering, extension or a flipped "
                    "bit is an error).",
    )
    p.add_argument("input", metavar="IN", help="the sealed archive")
    p.add_argument("output", metavar="OUT", help="where to write the plaintext")
    _key_arg(p)
    p.set_defaults(func=cmd_unseal)

    p = sub.add_parser(
        "wrap-key",
        description="HPKE-wrap (RFC 9180 base mode, X25519/HKDF-SHA256/AES-256-GCM) a 32-byte "
                    "content key to the recipient's X25519 public key, bound to one purchase. "
                    "Prints enc||ciphertext (80 bytes) as 160 hex chars.",
    )
    p.add_argument("--to", type=_hex_bytes(32, "--to"), required=True, metavar="X25519_PUB_HEX",
                   help="the recipient's X25519 public key (see `modex derive-key`)")
    _purchase_args(p)
    _key_arg(p)
    p.set_defaults(func=cmd_wrap_key)

    p = sub.add_parser(
        "unwrap-key",
        description="Open a wrapped key (160 hex chars) with the recipient's X25519 secret for the "
                    "given chain, marketplace and purchase, and print the content key as hex.",
    )
    p.add_argument("wrapped", type=_hex_bytes(80, "WRAPPED_HEX"), metavar="WRAPPED_HEX",
                   help="the 80-byte wrapped key as 160 hex chars")
    p.add_argument("--secret-hex", type=_hex_bytes(32, "--secret-hex"), required=True,
                   help="the recipient's X25519 secret (see `modex derive-key --secret`)")
    _purchase_args(p)
    p.set_defaults(func=cmd_unwrap_key)

    p = sub.add_parser(
        "derive-key",
        description="Sign the Modex encryption message with the wallet and derive its X25519 key "
                    "(HKDF-SHA256 of the signature). Prints the public key as hex; buyers pass it "
                    "to buy(), sellers wrap keys to it.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--keystore", metavar="FILE",
                     help="an encrypted JSON keystore; the password comes from $MODEX_PASSWORD "
                          "or a prompt")
    src.add_argument("--private-key-env", metavar="VAR",
                     help="the name of an environment variable holding the private key hex")
    p.add_argument("--chain-id", type=_uint, required=True, help="the chain's id (it is signed)")
    p.add_argument("--secret", action="store_true",
                   help="also print the X25519 secret (second line); keep it private")
    p.set_defaults(func=cmd_derive_key)


def cmd_hash(args) -> int:
    from node.manifest import build_manifest, check_model_hash

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
    from node.seal import seal_file

    _check_input(args.input)
    size = seal_file(args.key_hex, args.input, args.output, chunk_size=args.chunk_size)
    print(f"sealed {args.input} -> {args.output} ({size} bytes)")
    return 0


def cmd_unseal(args) -> int:
    from node.seal import unseal_file

    _check_input(args.input)
    size = unseal_file(args.key_hex, args.input, args.output)
    print(f"unsealed {args.input} -> {args.output} ({size} bytes)")
    return 0


def _check_input(path: str) -> None:
    from node.errors import SealError

    if not os.path.isfile(path):
        raise SealError(f"{path} is not a file: give the path of the file to read")


def cmd_wrap_key(args) -> int:
    from node.keywrap import wrap_key

    print(wrap_key(args.to, args.key_hex, chain_id=args.chain_id, marketplace=args.marketplace,
                   purchase_id=args.purchase_id).hex())
    return 0


def cmd_unwrap_key(args) -> int:
    from node.keywrap import unwrap_key

    print(unwrap_key(args.wrapped, args.secret_hex, chain_id=args.chain_id,
                     marketplace=args.marketplace, purchase_id=args.purchase_id).hex())
    return 0


def cmd_derive_key(args) -> int:
    from node.keywrap import derive_x25519

    if args.keystore:
        from node.keystore import load_signer, read_password

        signer = load_signer(args.keystore, read_password())
    else:
        from node.signer import signer_from_key

        value = os.environ.get(args.private_key_env)
        if not value:
            raise KeystoreError(f"environment variable {args.private_key_env} is not set or empty")
        signer = signer_from_key(value.strip())
    secret, public = derive_x25519(signer, args.chain_id)
    print(public.hex())
    if args.secret:
        print("warning: the next line is your X25519 secret; anyone holding it can open keys "
              "wrapped to you", file=sys.stderr)
        print(secret.hex())
    return 0

