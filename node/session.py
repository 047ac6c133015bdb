"""One node session for a command: config → chain, store, signer, key vault, built lazily.

The journey commands (publish, buy, fetch, refund, withdraw, vote, worker, validate) share
these options and this wiring; the UI builds the same objects from its own config.

Passwords: the wallet keystore's comes from ``$MODEX_PASSWORD`` or a prompt; the seller's key
vault uses ``$MODEX_VAULT_PASSWORD`` when set, else the same password as the keystore.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import threading
from functools import cached_property
from typing import ClassVar, Self

from node.config import Config, load_config
from node.errors import ConfigError
from node.keystore import load_signer, read_password
from node.keyvault import KeyVault

log = logging.getLogger(__name__)

VAULT_PASSWORD_ENV = "MODEX_VAULT_PASSWORD"


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


def add_node_options(parser: argparse.ArgumentParser) -> None:
    """The options every journey command takes (each overrides the configuration file)."""
    g = parser.add_argument_group("node")
    g.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (TOML); default $MODEX_CONFIG or <data dir>/config.toml",
    )
    g.add_argument(
        "--data-dir", metavar="DIR", help="node data folder (default .modex or ~/.modex)"
    )
    g.add_argument(
        "--chain",
        metavar="URL",
        help="a JSON-RPC URL (e.g. the local chain's, "
        'printed by `modex up` while it runs) or "embedded"',
    )
    g.add_argument("--ipfs", metavar="URL", help='"embedded" or a Kubo RPC API URL')
    g.add_argument(
        "--keystore", metavar="FILE", help="wallet keystore (default <data dir>/keystore.json)"
    )
    g.add_argument(
        "--deployment",
        metavar="FILE",
        help="deployment record (default deployments/<chainId>.json)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(
        getattr(args, "config", None),
        data_dir=getattr(args, "data_dir", None),
        chain=getattr(args, "chain", None),
        ipfs=getattr(args, "ipfs", None),
        keystore=getattr(args, "keystore", None),
        deployment_file=getattr(args, "deployment", None),
    )


def open_configured_store(config: Config):
    from node.content.store import open_store

    if config.ipfs == "embedded":
        source = None
        if config.store_source:
            from node.content.store.gateway import GatewaySource

            source = GatewaySource(config.store_source, timeout=config.rpc_timeout)
        return open_store("embedded", root=config.store_dir, source=source)
    return open_store(
        "kubo", api_url=config.ipfs, timeout=config.rpc_timeout, retries=config.rpc_retries
    )


class Session:
    """Lazily built node objects for one command (or one UI request context)."""

    def __init__(self, config: Config, *, signer=None, password: str | None = None):
        self.config = config
        self._signer = signer
        self._password = password

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Session:
        return cls(config_from_args(args))

    @cached_property
    def chain(self):
        from node.chain import Chain

        return Chain.from_config(self.config)

    @cached_property
    def store(self):
        return open_configured_store(self.config)

    def password(self) -> str:
        if self._password is None:
            self._password = read_password()
        return self._password

    @property
    def signer(self):
        if self._signer is None:
            keystore = self.config.keystore
            assert keystore is not None  # Config.__post_init__ fills in the default
            if not keystore.exists():
                data_dir = f"--data-dir {shlex.quote(str(self.config.data_dir))}"
                raise ConfigError(
                    f"no wallet keystore at {keystore}: import a funded account's key "
                    f"with `KEY=0x… modex account {data_dir} import --private-key-env KEY`, create "
                    f"one with `modex account {data_dir} new`, or pass --keystore FILE",
                    key="keystore",
                )
            self._signer = load_signer(keystore, self.password())
        return self._signer

    @cached_property
    def vault(self) -> KeyVault:
        passphrase = os.environ.get(VAULT_PASSWORD_ENV) or self.password()
        assert self.config.keyvault is not None  # Config.__post_init__ fills in the default
        return KeyVault(self.config.keyvault, passphrase)


class ProgressBars:
    """``progress(stage, n, total)`` callbacks as one tqdm bar per stage (hash, seal, pin, fetch).

    Bars go to stderr and switch themselves off when stderr is not a terminal.
    """

    # publish hashes each file while sealing it (one pass), so its "seal" bar is the hashing too
    LABELS: ClassVar[dict[str, str]] = {
        "hash": "hashing",
        "seal": "hashing+sealing",
        "pin": "pinning",
        "fetch": "fetching",
    }

    def __init__(self, disable: bool | None = None):
        self._bars: dict = {}
        self._disable = disable

    def __call__(self, stage: str, n: int, total: int | None) -> None:
        bar = self._bars.get(stage)
        if bar is None:
            from tqdm import tqdm

            bar = self._bars[stage] = tqdm(
                total=total,
                desc=self.LABELS.get(stage, stage),
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=self._disable,
                leave=True,
            )
        bar.update(n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_until_signalled(loop, interval: float) -> int:
    """Run ``loop(stop, interval=...)`` until SIGTERM or SIGINT sets ``stop``; exit code 0."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    loop(stop, interval=interval)
    return 0
