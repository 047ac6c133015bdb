"""`modex wrap-key|unwrap-key|derive-key`: content keys for a purchase by hand (§4.3).

These exist so that anyone can check what Modex wrote with nothing but this page and docs/formats.md:
wrap or unwrap a content key for a purchase, and show the X25519 key a wallet derives.
"""

from __future__ import annotations

import argparse
import os
import sys

from modex.commandline import add_command
from modex.commands.content import hex_bytes, key_arg, non_negative_int
from node.content.keywrap import derive_x25519, unwrap_key, wrap_key
from node.errors import KeystoreError
from node.keystore import load_signer, read_password
from node.signer import signer_from_key


def _purchase_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chain-id", type=non_negative_int, required=True, help="the chain's id (e.g. 31337)"
    )
    p.add_argument(
        "--marketplace", required=True, help="the Marketplace contract address (0x + 40 hex)"
    )
    p.add_argument(
        "--purchase-id",
        type=non_negative_int,
        required=True,
        help="the purchase id on that marketplace",
    )


def register(sub) -> None:
    p = add_command(sub, "wrap-key", cmd_wrap_key)
    p.add_argument(
        "--to",
        type=hex_bytes(32, "--to"),
        required=True,
        metavar="X25519_PUB_HEX",
        help="the recipient's X25519 public key (see `modex derive-key`)",
    )
    _purchase_args(p)
    key_arg(p)

    p = add_command(sub, "unwrap-key", cmd_unwrap_key)
    p.add_argument(
        "wrapped",
        type=hex_bytes(80, "WRAPPED_HEX"),
        metavar="WRAPPED_HEX",
        help="the 80-byte wrapped key as 160 hex chars",
    )
    p.add_argument(
        "--secret-hex",
        type=hex_bytes(32, "--secret-hex"),
        required=True,
        help="the recipient's X25519 secret (see `modex derive-key --secret`)",
    )
    _purchase_args(p)

    p = add_command(sub, "derive-key", cmd_derive_key)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--keystore",
        metavar="FILE",
        help="an encrypted JSON keystore; the password comes from $MODEX_PASSWORD or a prompt",
    )
    src.add_argument(
        "--private-key-env",
        metavar="VAR",
        help="the name of an environment variable holding the private key hex",
    )
    p.add_argument(
        "--chain-id", type=non_negative_int, required=True, help="the chain's id (it is signed)"
    )
    p.add_argument(
        "--secret",
        action="store_true",
        help="also print the X25519 secret (second line); keep it private",
    )


def _purchase(args) -> dict:
    """The purchase a key is bound to (the options of _purchase_args), as the keywords of
    wrap_key and unwrap_key."""
    return {
        "chain_id": args.chain_id,
        "marketplace": args.marketplace,
        "purchase_id": args.purchase_id,
    }


def cmd_wrap_key(args) -> int:
    """HPKE-wrap (RFC 9180 base mode, X25519/HKDF-SHA256/AES-256-GCM) a 32-byte content key to
    the recipient's X25519 public key, bound to one purchase. Prints enc||ciphertext (80 bytes)
    as 160 hex chars."""
    print(wrap_key(args.to, args.key_hex, **_purchase(args)).hex())
    return 0


def cmd_unwrap_key(args) -> int:
    """Open a wrapped key (160 hex chars) with the recipient's X25519 secret for the given chain,
    marketplace and purchase, and print the content key as hex."""
    print(unwrap_key(args.wrapped, args.secret_hex, **_purchase(args)).hex())
    return 0


def cmd_derive_key(args) -> int:
    """Sign the Modex encryption message with the wallet and derive its X25519 key (HKDF-SHA256
    of the signature). Prints the public key as hex; buyers pass it to buy(), sellers wrap keys
    to it."""
    if args.keystore:
        signer = load_signer(args.keystore, read_password())
    else:
        value = os.environ.get(args.private_key_env)
        if not value:
            raise KeystoreError(f"environment variable {args.private_key_env} is not set or empty")
        signer = signer_from_key(value.strip())
    secret, public = derive_x25519(signer, args.chain_id)
    print(public.hex())
    if args.secret:
        print(
            "warning: the next line is your X25519 secret; anyone holding it can open keys "
            "wrapped to you",
            file=sys.stderr,
        )
        print(secret.hex())
    return 0
