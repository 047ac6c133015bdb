"""`modex up`: the whole exchange on one machine, then the web UI at http://127.0.0.1:<port>.

    modex up [--port N] [--gateway-port N] [--chain local|embedded|URL] [--ipfs embedded|URL]
             [--reset] [--no-demo] [--hosted] [--ui-processes N]

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
--hosted (config key `hosted = true`) runs an exchange for other people: the server never
creates, imports or unlocks a visitor's keystore and offers no demo wallet; visitors sign in and
sign every transaction with their browser wallet (EIP-1193, e.g. MetaMask). Its UI is served
by one process per core (--ui-processes N, config key `ui_processes`), sharing the UI's port:
modex/uiprocesses.py.
Passwords: the worker's keystore and the key vault use $MODEX_VAULT_PASSWORD, else the demo
password (printed; demo mode), else a prompt.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import gc
import logging
import os
import signal
import threading

from waitress.server import create_server

from app import create_app
from app.inference import warm_models
from app.resources import close_resources
from modex.commandline import add_node_options
from modex.commands import tcp_port
from modex.demo import DEMO_PASSWORD, seed_demo
from modex.exchange import Exchange, bind_port, open_listeners
from modex.uiprocesses import UiProcesses, UiProcessSpec, ui_process_count
from node.config import load_config
from node.errors import ConfigError
from node.keystore import read_password
from node.stack import VAULT_PASSWORD_ENV

FAUCET_WEI = 10 * 10**18
# Requests the UI serves at once (waitress's thread pool); more wait in its queue.
UI_THREADS = 16
# Connections the UI keeps open at once (waitress's default, 100, stops accepting the 101st
# browser of a hosted exchange until another closes: benchmarks/hosted_load.py keeps 200+ open).
UI_CONNECTIONS = 2000


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
    add_node_options(
        p,
        "--config",
        "--data-dir",
        "--chain",
        "--ipfs",
        chain=(
            "local|embedded|URL",
            '"local" (default: an anvil run by this command, its state kept in <data dir>/chain), '
            '"embedded" (in memory, reset at every start) or a JSON-RPC URL',
        ),
        ipfs=("embedded|URL", '"embedded" (default) or a Kubo RPC API URL'),
    )
    p.add_argument("--no-demo", action="store_true", help="no demo accounts and no demo model")
    p.add_argument(
        "--hosted",
        action="store_true",
        default=None,
        help="an exchange for other people (config: hosted = true): no keystore is created, "
        "imported or unlocked on this server; visitors use a browser wallet",
    )
    p.add_argument(
        "--ui-processes",
        type=int,
        default=None,
        metavar="N",
        help="processes serving the UI, sharing its port (config: ui_processes; default: one "
        "per core with --hosted, else one; more than one needs --hosted)",
    )
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
        hosted=args.hosted,
        ui_processes=args.ui_processes,
    )
    ui_process_count(config)  # a count the exchange cannot run stops us before anything runs
    if args.reset and not config.is_local_chain:
        raise ConfigError(
            f"--reset deletes the local chain's state, and the chain here is "
            f"{config.chain!r}: leave out --reset (or --chain)",
            key="chain",
        )
    demo = not args.no_demo
    listeners = open_listeners(config)  # first: a port that is taken stops us before anything runs
    try:
        password = os.environ.get(VAULT_PASSWORD_ENV) or (DEMO_PASSWORD if demo else None)
        if password is None:
            password = read_password(prompt="Password for this node's worker key and key vault: ")
        with sigterm_as_ctrl_c():
            exchange = Exchange.start(
                config, password=password, listeners=listeners, reset=args.reset
            )
            try:
                if demo:
                    seed_demo(exchange, say=print)
                serve(exchange, demo=demo, password=password)
            finally:
                exchange.stop()
    finally:
        for sock in listeners.values():
            sock.close()
    return 0


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


# ---- the UI -------------------------------------------------------------------------------


def ui_settings(
    *,
    config,
    chain,
    store,
    vault,
    operator: str,
    models,
    funder: str | None = None,
    demo: bool = False,
    demo_wallets: dict | None = None,
) -> dict:
    """The app config of the UI over a running exchange's parts (the exchange's own process and
    each of modex.uiprocesses builds its app from it)."""
    return {
        "MODEX_NODE_CONFIG": config,
        "MODEX_CHAIN": chain,
        "MODEX_STORE": store,
        "MODEX_KEYVAULT": vault,
        "MODEX_OPERATOR": operator,
        "MODEX_FAUCET_WEI": FAUCET_WEI if funder else 0,
        "MODEX_FAUCET_ACCOUNT": funder,
        "MODEX_DEMO": demo,
        "MODEX_HOSTED": config.hosted,
        "MODEX_DEMO_WALLETS": demo_wallets or {},
        "MODEX_MODELS": models,
    }


def create_ui(exchange: Exchange, *, demo: bool, extra: dict | None = None):
    """The Flask app over this running exchange."""
    settings = ui_settings(
        config=exchange.config,
        chain=exchange.chain,
        store=exchange.store,
        vault=exchange.vault,
        operator=exchange.operator.address,
        models=exchange.models,
        funder=exchange.dev_funder,
        demo=demo,
        demo_wallets={
            role: signer.address for role, signer in (exchange.demo_accounts or {}).items()
        },
    )
    return create_app({**settings, **(extra or {})})


def describe_chain(exchange: Exchange) -> str:
    """The chain in the start-up line: what it is, and whether it keeps what happens."""
    chain = exchange.chain
    if exchange.local_chain is not None:
        return (
            f"local anvil {exchange.local_chain.url}, chain id {chain.chain_id}, kept in "
            f"{exchange.local_chain.folder}"
        )
    if chain.endpoint == "embedded":
        return f"embedded, chain id {chain.chain_id}, in memory: reset at every start"
    return f"{chain.endpoint}, chain id {chain.chain_id}"


def serve(exchange: Exchange, *, demo: bool, password: str) -> None:
    """Serve the UI on its port with waitress until Ctrl-C (or SIGTERM): in this process's
    threads, and for a hosted exchange in more processes beside it (modex.uiprocesses), all
    accepting on the same socket. Not gunicorn's pre-forked workers: the exchange's chain (the
    embedded one lives in this process's memory), its follower threads and the gateway run here,
    and a forked worker would hold a copy of them that diverges, or locks a thread held at the
    fork. ``password``: the key vault's, for the other UI processes."""
    processes = ui_process_count(exchange.config)
    app = create_ui(exchange, demo=demo)
    warmer = warm_models(app)
    sock = exchange.listeners.pop("ui_port", None) or bind_port(exchange.config, "ui_port")
    server = create_server(
        app, sockets=[sock], threads=UI_THREADS, connection_limit=UI_CONNECTIONS, ident="modex"
    )
    others = None
    try:
        if processes > 1:
            others = UiProcesses(ui_process_spec(exchange, app, sock, password), processes - 1)
            others.start()
        announce(exchange, sock, demo=demo, processes=processes)
        freeze_startup_objects()
        server.run()  # waitress returns from here on Ctrl-C
    finally:
        print("stopping…", flush=True)
        if others is not None:
            others.stop()
        server.close()
        sock.close()
        if warmer is not None:
            warmer.stop()
        close_resources(app)


def freeze_startup_objects() -> None:
    """Move everything built so far (modules, the app, web3's contracts) out of the cyclic
    garbage collector's reach (gc.freeze): they live as long as the process, and each full
    collection walked them all while every request of the process waited (50 ms for the 170,000
    objects of the app's imports alone, measured here)."""
    gc.collect()
    gc.freeze()


def ui_process_spec(exchange: Exchange, app, sock, password: str) -> UiProcessSpec:
    """What the other UI processes build the same app from (the settings of ``app``)."""
    settings = app.config
    return UiProcessSpec(
        config=exchange.config,
        operator=settings["MODEX_OPERATOR"],
        funder=settings["MODEX_FAUCET_ACCOUNT"],
        demo=settings["MODEX_DEMO"],
        demo_wallets=settings["MODEX_DEMO_WALLETS"],
        password=password,
        secret_key=settings["SECRET_KEY"],
        sock=sock,
        threads=UI_THREADS,
        connection_limit=UI_CONNECTIONS,
        parent_pid=os.getpid(),
        log_level=logging.getLogger().level,
    )


def announce(exchange: Exchange, sock, *, demo: bool, processes: int) -> None:
    """The start-up lines: where the UI is, the chain and store, the mode."""
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    print(
        f"Modex is up at {url}  (chain: {describe_chain(exchange)}; store: {exchange.config.ipfs}"
        + (f", gateway {exchange.gateway.url}" if exchange.gateway else "")
        + ")"
    )
    if exchange.local_chain is not None:
        print(
            f"Other modex commands reach this chain while it runs with --chain "
            f"{exchange.local_chain.url}; `modex up --reset` starts a new, empty one."
        )
    if exchange.config.hosted:
        print(
            "Hosted mode: this server holds no visitor's key (no wallet is created, imported "
            "or unlocked here); visitors need a browser wallet (EIP-1193, e.g. MetaMask) to "
            "sign in and sign."
        )
    elif demo and exchange.demo_accounts:
        print(f"Demo wallets (password: {DEMO_PASSWORD}):")
        for role, signer in exchange.demo_accounts.items():
            print(f"  {role:9} {signer.address}")
    if processes > 1:
        print(f"The UI is served by {processes} processes sharing its port (--ui-processes).")
    print("Press Ctrl-C to stop.", flush=True)
