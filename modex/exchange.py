"""A running exchange: the node's parts (a node.stack.Stack) and what only `modex up` has beside
them: the ports it listens on, the IPFS gateway, the follower threads and their stop event, the
local chain process, the operator key its worker delivers with, and the demo wallets.

Before anything starts, `modex up` takes its ports on 127.0.0.1 (open_listeners): the UI's
(--port, ui_port, 5000) and the embedded store's gateway's (--gateway-port, gateway_port, 8080).
A default port another program holds is replaced by a free one (said at start); a port you chose
that is taken is an error naming the option. Then Exchange.start brings up, in this order: the
chain, the contract suite (the deployment record is used when its contracts are on the chain,
else the suite is deployed from the chain's first unlocked dev account), the content store
(embedded, served read-only by the gateway, or a Kubo RPC API URL), the key vault and the
operator key, and — unless asked not to — the indexer follower and the key-delivery worker
(operator of every model published from the UI), each in a thread.

The chain, by default "local": an anvil on a free 127.0.0.1 port whose state is kept in
<data dir>/chain/ with everything tied to it (deployment record, index, worker state, key vault,
the models served for inference: Exchange.models, a node.served_dirs.ServedModelDirs).
"embedded" is an in-memory chain inside this process, reset at every start (with its index, key
vault and deployment, in <data dir>/embedded/). A URL is a node you run (e.g. anvil).
"""

from __future__ import annotations

import errno
import logging
import shutil
import socket
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from web3.exceptions import Web3RPCError

from node.chain import Chain, connect
from node.content.store.gateway import serve_gateway
from node.deploy import deploy_suite, write_deployment
from node.errors import ConfigError
from node.indexer import Indexer
from node.keystore import create_keystore, load_signer
from node.localchain import open_local_chain
from node.served_dirs import ServedModelDirs
from node.servicestore import open_service_store
from node.stack import Stack
from node.worker import KeyDelivery

log = logging.getLogger(__name__)

LOCAL_CHAIN_DIR = "chain"  # under the data dir: the local chain and what is tied to it
# The ports `modex up` listens on: configuration key -> (the option that sets it, what listens).
PORTS = {
    "ui_port": ("--port", "the web UI"),
    "gateway_port": ("--gateway-port", "the IPFS gateway"),
}
OPERATOR_FUNDS_WEI = 10 * 10**18
# Connections the kernel queues on a port before the server accepts them (a hosted exchange's
# visitors arrive together).
LISTEN_BACKLOG = 1024


@dataclass
class Exchange:
    """Everything `modex up` runs; `stop()` ends the threads and servers it started."""

    stack: Stack  # the node's parts: config, chain, store, key vault
    operator: object  # the worker's Signer (operator of UI-published models)
    dev_funder: str | None = None  # an unlocked account paying test ETH on dev chains
    local_chain: object = None  # node.localchain.LocalChain when the chain is "local"
    listeners: dict = field(default_factory=dict)  # PORTS key -> socket bound before the start
    gateway: object = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list = field(default_factory=list)
    demo_accounts: dict = field(default_factory=dict)
    # model id -> local model dir (inference): Exchange.start makes it the chain's served-models
    # file (node.served_dirs), kept across restarts and shared by the UI's processes
    models: MutableMapping[int, Path] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        config,
        *,
        password: str,
        start_threads: bool = True,
        listeners: dict | None = None,
        reset: bool = False,
    ) -> Exchange:
        """Chain + suite, store (+ gateway), key vault, operator key; followers started if asked.
        ``password``: the key vault's and the operator keystore's; ``listeners``: sockets from
        open_listeners (else the gateway's port is bound here); ``reset``: a new local chain."""
        config.data_dir.mkdir(parents=True, exist_ok=True)
        chain, config, funder, local = _chain(config, reset=reset)
        try:
            stack = Stack(config, chain=chain, password=password)
            served = ServedModelDirs(config.served_models_path(chain.chain_id))
            served.check()  # a served-models file that cannot be read stops the start here
            # Both opened now: a store or key vault that cannot open stops the start here.
            store, _vault = stack.store, stack.vault
            exchange = cls(
                stack,
                operator=_operator_key(config, password),
                dev_funder=funder,
                local_chain=local,
                listeners=dict(listeners or {}),
                models=served,
            )
            exchange.fund(exchange.operator.address, OPERATOR_FUNDS_WEI)
            if config.ipfs == "embedded":
                sock = exchange.listeners.pop("gateway_port", None) or bind_port(
                    config, "gateway_port"
                )
                exchange.gateway = serve_gateway(store, sock=sock)
        except BaseException:
            if local is not None:  # nothing half-started: the anvil goes with the failed start
                local.stop()
            raise
        if start_threads:
            exchange.start_followers()
        return exchange

    @property
    def config(self):
        return self.stack.config

    @property
    def chain(self) -> Chain:
        return self.stack.chain

    @property
    def store(self):
        return self.stack.store

    @property
    def vault(self):
        return self.stack.vault

    def indexer(self) -> Indexer:
        """A new indexer over the node's index (one per thread: SQLite connections are)."""
        return self.stack.indexer()

    def key_delivery(self) -> KeyDelivery:
        """The worker delivering the keys of the models the operator key operates."""
        return self.stack.key_delivery(signer=self.operator)

    def fund(self, address: str, target_wei: int) -> None:
        """Top ``address`` up to ``target_wei`` from the unlocked dev account (dev chains only)."""
        if self.dev_funder is None:
            return
        have = self.chain.balance(address)
        if have >= target_wei // 2:
            return
        w3 = self.chain.w3
        tx = w3.eth.send_transaction(
            {"from": self.dev_funder, "to": address, "value": target_wei - have}
        )
        w3.eth.wait_for_transaction_receipt(tx, timeout=60)

    def service_store(self):
        """The paid service's state (nonces, vouchers, trials) on this chain: the store the UI's
        inference mount answers from and the claimer claims from (Config.service_store_at)."""
        chain = self.chain
        return open_service_store(
            self.config.service_store_at(chain.chain_id, chain.marketplace.address)
        )

    def start_followers(self) -> None:
        """The indexer follower, the key-delivery worker and the claimer of the vouchers the
        node's service took (as the operator of the models published from the UI), each in a
        daemon thread."""
        interval = min(self.config.poll_interval, 0.5)

        def index_loop():
            indexer = self.indexer()
            try:
                indexer.follow(self.stop_event, poll_interval=interval)
            finally:
                indexer.close()

        def worker_loop():
            self.key_delivery().run(self.stop_event, interval=interval)

        def claimer_loop():
            store = self.service_store()
            try:
                claimer = self.stack.claimer(store, signer=self.operator)
            except ConfigError as exc:  # a chain deployed before Channels existed
                log.warning("no claimer for the service's vouchers: %s", exc)
                store.close()
                return
            try:
                claimer.run(self.stop_event, interval)
            finally:
                store.close()

        loops = (
            ("modex-indexer", index_loop),
            ("modex-worker", worker_loop),
            ("modex-claimer", claimer_loop),
        )
        for name, target in loops:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=10)
            if thread.is_alive():
                log.warning("%s did not stop within 10 s; exiting without it", thread.name)
        if self.gateway is not None:
            self.gateway.stop()
        self.stack.close()  # the store (a Kubo store's HTTP client)
        for sock in self.listeners.values():  # any not handed to a server
            sock.close()
        if self.local_chain is not None:  # last: the others may have sent a transaction
            self.local_chain.stop()
        log.info(
            "stopped: %s, the store%s%s",
            ", ".join(t.name for t in self.threads) or "no threads",
            ", the gateway" if self.gateway is not None else "",
            f", the local chain (state saved in {self.local_chain.state_path})"
            if self.local_chain is not None
            else "",
        )


def _operator_key(config, password: str):
    """The worker's own key: a keystore in the data dir, created on first start."""
    path = config.data_dir / "operator-keystore.json"
    if not path.exists():
        create_keystore(path, password)
    return load_signer(path, password)


# ---- the chain ----------------------------------------------------------------------------


def _chain(config, *, reset: bool = False):
    """(Chain, config with the run's paths, funder address or None, LocalChain or None)."""
    if config.is_local_chain:
        local = open_local_chain(
            config.data_dir / LOCAL_CHAIN_DIR, reset=reset, timeout=config.rpc_timeout
        )
        try:
            run = local.folder
            config = config.replace(
                chain=local.url,
                index_db=run / "index.sqlite3",
                keyvault=run / "keyvault.json",
                deployment_file=run / f"{local.w3.eth.chain_id}.json",
            )
            return (*_suite(config, connect(config)), local)
        except BaseException:
            local.stop()
            raise
    w3 = connect(config)
    if config.is_embedded_chain:
        # A fresh in-memory chain: everything tied to the old one is stale; start that afresh.
        run = config.data_dir / "embedded"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        config = config.replace(index_db=run / "index.sqlite3", keyvault=run / "keyvault.json")
        funder = w3.eth.accounts[0]
        record = deploy_suite(w3, funder, stablecoin=True)
        path = write_deployment(record, run)
        config = config.replace(deployment_file=Path(path))
        log.info("embedded chain %d: suite deployed (%s)", w3.eth.chain_id, path)
        return Chain.from_config(config, w3=w3), config, funder, None
    return (*_suite(config, w3), None)


def _suite(config, w3):
    """(Chain, config, funder or None) on a node: the deployment record when its contracts are
    there, else the suite deployed from the node's first unlocked account (a dev chain)."""
    accounts = _unlocked_accounts(w3)
    funder = accounts[0] if accounts else None
    chain_id = w3.eth.chain_id
    path = config.deployment_path(chain_id)
    if path.is_file():
        try:
            return Chain.from_config(config, w3=w3), config, funder
        except ConfigError as exc:
            # A dev node restarted since the file was written: no code at its addresses.
            if funder is None:
                raise
            log.warning("%s; deploying a fresh suite from the dev account %s", exc, funder)
    elif funder is None:
        raise ConfigError(
            f"no deployment file for chain {chain_id} ({path}) and the node at {config.chain} "
            "holds no unlocked account to deploy from: deploy with "
            "`python scripts/deploy.py --network <url>` first",
            key="deployment_file",
        )
    write_deployment(deploy_suite(w3, funder, stablecoin=True), path.parent)
    log.info("chain %d at %s: suite deployed (%s)", chain_id, config.chain, path)
    return Chain.from_config(config, w3=w3), config, funder


def _unlocked_accounts(w3) -> list[str]:
    try:
        return list(w3.eth.accounts)
    except (Web3RPCError, ValueError):  # a public RPC node may refuse eth_accounts: none then
        return []


# ---- the ports ----------------------------------------------------------------------------


def open_listeners(config, say=print) -> dict[str, socket.socket]:
    """Bind every port `modex up` serves (see PORTS; the gateway's only for the embedded store);
    a replaced default port is said once all are bound, or not at all."""
    keys = ["ui_port"] + (["gateway_port"] if config.ipfs == "embedded" else [])
    listeners: dict[str, socket.socket] = {}
    notices: list[str] = []
    try:
        for key in keys:
            listeners[key] = bind_port(config, key, notices.append)
    except BaseException:
        for sock in listeners.values():
            sock.close()
        raise
    for notice in notices:
        say(notice)
    return listeners


def bind_port(config, key: str, say=print) -> socket.socket:
    """A listening socket on 127.0.0.1 at ``config.<key>``. When another program holds that
    port: the default is replaced by a free port (said); a port set by an option, the
    environment or the configuration file is a ConfigError naming the option."""
    port = getattr(config, key)
    option, what = PORTS[key]
    try:
        return socket.create_server(("127.0.0.1", port), backlog=LISTEN_BACKLOG)
    except OSError as exc:
        origin = config.sources.get(key)
        if exc.errno != errno.EADDRINUSE or origin is not None:
            where = option if origin in (None, "override") else f"{key} {origin}"
            why = (
                "is taken by another program"
                if exc.errno == errno.EADDRINUSE
                else f"cannot be used ({exc.strerror})"
            )
            raise ConfigError(
                f"port {port} for {what} ({where}) {why}: choose another with "
                f"{option} N (0 = any free port)",
                key=key,
            ) from None
    sock = socket.create_server(("127.0.0.1", 0), backlog=LISTEN_BACKLOG)
    say(
        f"Port {port} is taken by another program: {what} listens on port "
        f"{sock.getsockname()[1]} instead ({option} N chooses the port)."
    )
    return sock
