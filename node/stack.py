"""The node's parts, built from one ``Config``: the one place that wires the node.

    stack = Stack(config)            # or Stack.from_args(args) in a command
    stack.chain, stack.store, stack.signer, stack.vault     # built once, when first asked for
    stack.indexer(), stack.key_delivery(), stack.validator_agent(evaluator=...)   # new each call
    stack.claimer(service_store)     # the seller's claims of the vouchers its service stored
    stack.close()                    # closes what the stack built (a Kubo store's HTTP client)

Every entry point gets its parts here: each `modex` command, `modex up` (modex/exchange.py holds
a Stack beside what only a running exchange has), the Flask app (app/resources.py) and the test
fixtures. A part can be handed in ready-made (a chain `modex up` deployed a suite on, a test's
vault with a fast KDF); the stack then never closes it. The parts are built under a lock, so the
app's request threads share one of each.

Passwords: the wallet keystore's comes from ``$MODEX_PASSWORD`` or a prompt (or ``password``);
the seller's key vault uses ``$MODEX_VAULT_PASSWORD`` when set, else the same password. A wrong
one is refused with where it came from and what to do (``wrong_password``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import threading
from collections.abc import Callable
from typing import Any

from node.chain import Chain
from node.claimer import Claimer
from node.config import Config, load_config
from node.content.store import open_store
from node.content.store.gateway import GatewaySource
from node.errors import ConfigError, KeystoreError
from node.indexer import Indexer
from node.keystore import PASSWORD_ENV, load_signer, read_password
from node.keyvault import KeyVault
from node.validator import Evaluator, ValidatorAgent
from node.worker import KeyDelivery

log = logging.getLogger(__name__)

VAULT_PASSWORD_ENV = "MODEX_VAULT_PASSWORD"
PROMPT = "the prompt"  # where a password came from, when no environment variable held it


def wrong_password(what: str, origin: str) -> KeystoreError:
    """``what`` (the keystore, the key vault) refused the password read from ``origin``: say where
    it came from and what to do."""
    if origin == PROMPT:
        fix = f"run the command again and type its password there (or set {PASSWORD_ENV})"
    elif origin == f"${VAULT_PASSWORD_ENV}":
        fix = (
            f"set {VAULT_PASSWORD_ENV} to the key vault's passphrase, or unset it if the vault "
            "has the wallet's password"
        )
    elif origin.startswith("$"):
        fix = f"set {origin[1:]} to its password, or unset it to type it at a prompt"
    else:  # handed to the Stack by the program that started it
        fix = "start the node with its password"
    if what.startswith("key vault") and origin != f"${VAULT_PASSWORD_ENV}":
        fix += (
            f"; without ${VAULT_PASSWORD_ENV} the key vault takes the wallet's password, so "
            f"set {VAULT_PASSWORD_ENV} if the vault has a passphrase of its own"
        )
    if what.startswith("key vault"):
        fix += " (or the vault's file was altered)"
    return KeystoreError(
        f"wrong password for {what}: the password came from {origin}; {fix}",
        wrong_password=True,
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """The configuration a command's node options (``--config``, ``--data-dir``, ``--chain``,
    ``--ipfs``, ``--keystore``, ``--deployment``) describe; an option a command lacks is unset."""
    return load_config(
        getattr(args, "config", None),
        data_dir=getattr(args, "data_dir", None),
        chain=getattr(args, "chain", None),
        ipfs=getattr(args, "ipfs", None),
        keystore=getattr(args, "keystore", None),
        deployment_file=getattr(args, "deployment", None),
    )


def open_configured_store(config: Config):
    """The content store ``config`` names: the embedded one in ``store_dir`` (fetching missing
    blocks from ``store_source`` when set) or a Kubo RPC API daemon by URL."""
    if config.ipfs == "embedded":
        source = (
            GatewaySource(config.store_source, timeout=config.rpc_timeout)
            if config.store_source
            else None
        )
        return open_store("embedded", root=config.store_dir, source=source)
    return open_store(
        "kubo", api_url=config.ipfs, timeout=config.rpc_timeout, retries=config.rpc_retries
    )


class Stack:
    """The node's parts for one command, one running exchange or one app, built lazily."""

    def __init__(
        self,
        config: Config,
        *,
        chain: Chain | None = None,
        store=None,
        signer=None,
        vault: KeyVault | None = None,
        password: str | None = None,
        password_origin: str = "the program that started this node",
    ):
        self.config = config
        self._password = password
        self._password_origin = password_origin  # said when the password is refused
        handed = {"chain": chain, "store": store, "signer": signer, "vault": vault}
        self._parts: dict[str, Any] = {k: v for k, v in handed.items() if v is not None}
        self._built: list[str] = []  # what close() closes: the parts built here
        self._lock = threading.RLock()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Stack:
        return cls(config_from_args(args))

    def _part(self, name: str, build: Callable[[], Any]):
        with self._lock:
            if name not in self._parts:
                self._parts[name] = build()
                self._built.append(name)
            return self._parts[name]

    @property
    def chain(self) -> Chain:
        return self._part("chain", lambda: Chain.from_config(self.config))

    @property
    def store(self):
        return self._part("store", lambda: open_configured_store(self.config))

    @property
    def signer(self):
        """The wallet: the keystore's account, unlocked with ``password()``."""
        return self._part("signer", self._load_signer)

    @property
    def vault(self) -> KeyVault:
        """The seller's content keys."""
        return self._part("vault", self._open_vault)

    def password(self) -> str:
        with self._lock:
            if self._password is None:
                self._password_origin = (
                    f"${PASSWORD_ENV}" if os.environ.get(PASSWORD_ENV) else PROMPT
                )
                self._password = read_password()
            return self._password

    def _load_signer(self):
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
        password = self.password()
        try:
            return load_signer(keystore, password)
        except KeystoreError as exc:
            if exc.context.get("wrong_password"):
                raise wrong_password(f"keystore {keystore}", self._password_origin) from None
            raise

    def _open_vault(self) -> KeyVault:
        from_env = os.environ.get(VAULT_PASSWORD_ENV)
        passphrase = from_env or self.password()
        assert self.config.keyvault is not None  # Config.__post_init__ fills in the default
        vault = KeyVault(self.config.keyvault, passphrase)
        try:
            vault.entries()  # a wrong passphrase is said now, with where it came from
        except KeystoreError as exc:
            if exc.context.get("wrong_password"):
                origin = f"${VAULT_PASSWORD_ENV}" if from_env else self._password_origin
                raise wrong_password(f"key vault {vault.path}", origin) from None
            raise
        return vault

    def indexer(self, *, metadata: bool = True) -> Indexer:
        """A new indexer over the configured index (one per thread: SQLite connections are);
        listings get their names from the store unless ``metadata`` is False. The caller closes
        it."""
        return Indexer.from_config(self.config, self.chain, store=self.store if metadata else None)

    def key_delivery(self, signer=None, **options) -> KeyDelivery:
        """The key-delivery worker for the models ``signer`` (default: the wallet) owns or
        operates; ``options`` as KeyDelivery.from_config takes them (state, crash)."""
        return KeyDelivery.from_config(
            self.config,
            self.chain,
            signer or self.signer,
            self.vault,
            store=self.store,
            **options,
        )

    def claimer(self, service_store, signer=None, **options) -> Claimer:
        """The claimer of the vouchers ``service_store`` (a ServiceStore, node/servicestore) holds
        for the models ``signer`` (default: the wallet) owns or operates; ``options`` as
        Claimer.from_config takes them (crash, clock)."""
        return Claimer.from_config(
            self.config, self.chain, signer or self.signer, service_store, **options
        )

    def validator_agent(self, *, evaluator: Evaluator, signer=None, **options) -> ValidatorAgent:
        """The validator agent for ``signer`` (default: the wallet), evaluating with
        ``evaluator``; ``options`` as ValidatorAgent.from_config takes them."""
        return ValidatorAgent.from_config(
            self.config,
            self.chain,
            signer or self.signer,
            self.store,
            evaluator=evaluator,
            **options,
        )

    def close(self) -> None:
        """Close the parts this stack built that hold a resource (a Kubo store's HTTP client);
        parts handed in belong to whoever built them."""
        with self._lock:
            for name in reversed(self._built):
                close = getattr(self._parts.pop(name), "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:  # closing is best effort at shutdown
                        log.warning("closing the %s failed", name, exc_info=True)
            self._built.clear()
