"""`modex account new|import|show`: the wallet keystore (eth-account encrypted JSON, scrypt)."""

from __future__ import annotations

import getpass
import os

from web3 import Web3

from modex.commandline import add_command, add_node_options
from node.chain import Chain, connect
from node.errors import KeystoreError
from node.keystore import create_keystore, import_private_key, keystore_address, read_password
from node.stack import config_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "account",
        description="Manage the node's wallet: an encrypted JSON keystore (Web3 Secret Storage, "
        "scrypt), written with mode 0600. The password comes from $MODEX_PASSWORD or a prompt.",
    )
    add_node_options(p, "--config", "--data-dir", "--keystore")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    add_command(actions, "new", run_new, help="create a new random account")
    add_command(
        actions, "import", run_import, help="encrypt an existing private key into a keystore"
    ).add_argument(
        "--private-key-env",
        metavar="VAR",
        help="read the hex private key from this environment variable",
    )
    show = add_command(actions, "show", run_show, help="print the keystore's address (and balance)")
    show.add_argument("--balance", action="store_true", help="also ask the chain for the balance")
    add_node_options(show, "--chain")


def run_new(args) -> int:
    """Create a new random account in a new keystore file (never overwrites one) and print its
    address."""
    config = config_from_args(args)
    if config.keystore.exists():
        raise KeystoreError(
            f"keystore {config.keystore} already exists; pass --keystore FILE for another one"
        )
    address = create_keystore(config.keystore, read_password(confirm=True, prompt="New password: "))
    print(f"address {address}")
    print(f"keystore {config.keystore}")
    return 0


def run_import(args) -> int:
    """Encrypt an existing private key. The key is read from the environment variable named by
    --private-key-env, or asked for without echo; it is never taken on the command line (other
    users could read it from the process list)."""
    config = config_from_args(args)
    if args.private_key_env:
        key = os.environ.get(args.private_key_env)
        if not key:
            raise KeystoreError(f"${args.private_key_env} is empty or not set")
    else:
        try:
            key = getpass.getpass("Private key (hex): ")
        except EOFError:
            raise KeystoreError(
                "no private key: use --private-key-env VAR or run on a terminal"
            ) from None
    address = import_private_key(
        config.keystore, key.strip(), read_password(confirm=True, prompt="New password: ")
    )
    print(f"address {address}")
    print(f"keystore {config.keystore}")
    return 0


def run_show(args) -> int:
    """Print the address recorded in the keystore without decrypting it; with --balance also its
    balance on the chain."""
    config = config_from_args(args)
    address = keystore_address(config.keystore)
    print(f"address {address}")
    print(f"keystore {config.keystore}")
    if args.balance:
        # Balances need no contracts: a Chain over an empty deployment record.
        chain = Chain(connect(config), {"contracts": {}}, abis={}, retries=config.rpc_retries)
        print(f"balance {Web3.from_wei(chain.balance(address), 'ether')} ETH on {chain.endpoint}")
    return 0
