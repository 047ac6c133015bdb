"""`modex serve`: paid, EIP-712-signed inference for a model directory (ml/endpoint.py), under
gunicorn: a master process that holds the port and pre-forked workers that accept on it.

modex serve runs/sentiment --model-id 1 --chain http://127.0.0.1:8545 [--dtype int8 --workers 2 --port N]
modex serve ... --processes 2       (two gunicorn workers, one per core, sharing the port and state)
modex serve ... --state redis://HOST:6379/0   (state shared with other machines serving it)

Each worker loads the model after the fork (never torch before a fork) with its share of the
cores, and opens the state store (node/servicestore: used nonces, vouchers, free-trial counts),
by default a SQLite file in the data dir that all workers share. A worker that dies is replaced;
SIGTERM or Ctrl-C stops them all; a worker whose master is killed outright stops by itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import sys
from pathlib import Path

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from ml.endpoint import InferenceService, create_app, onchain_has_license
from ml.payment import onchain_channel_options
from ml.serve import BACKENDS, DEFAULT_BACKEND, DynamicBatcher, Predictor
from modex.commandline import SERVE_HOST, SERVE_PORT, add_command, add_node_options, service_url
from node.errors import ConfigError, ModexError
from node.servicestore import open_service_store
from node.stack import Stack, config_from_args

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = add_command(subparsers, "serve", cmd_serve)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="the model directory to serve")
    p.add_argument(
        "--model-id", type=int, required=True, help="the on-chain model id it serves (required)"
    )
    p.add_argument("--host", default=SERVE_HOST, help="address to listen on (default: %(default)s)")
    p.add_argument(
        "--port",
        type=int,
        default=SERVE_PORT,
        help="port to listen on, 0 for any free one (default: %(default)s)",
    )
    p.add_argument(
        "--dtype",
        choices=("fp32", "bf16", "int8"),
        default=None,
        help="weights for serving (default: int8 on CPU, where it kept the classifier's "
        "accuracy and serves ~1.5x faster; fp32 on CUDA). fp32 is the reference",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=DEFAULT_BACKEND,
        help="what runs the model: torch (BERT classifiers: a packed forward, no work on "
        "padding) or onnx (ONNX Runtime, CPU, fp32 or int8; exported once into MODEL_DIR.onnx "
        "beside the folder) (default: %(default)s, which served faster here)",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=128,
        help="tokens per input; longer: truncated (default: %(default)s)",
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=16,
        help="texts per batch; give each worker a full batch: clients / workers "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="batches run at once on each process's model (torch threads are split "
        "between them; default: 2 with one process, else 1)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="gunicorn worker processes sharing the port, each with its own copy of the "
        "model and an equal share of the cores: the HTTP work (parsing, JSON, signature "
        "checks) then runs in parallel too. They share the state store (--state) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a batch waits for more texts before it runs (default: %(default)s)",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=256,
        help="requests waiting at most; more are refused at once with 503 queue_full "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--state",
        metavar="URL",
        help="where used nonces, vouchers and free-trial counts live, shared by every "
        "process and machine serving this model: a SQLite file (PATH or sqlite:///PATH), "
        "redis://HOST:PORT/DB or postgresql://USER@HOST:PORT/DB (default: service_store "
        "from the config, else a SQLite file in the data dir, "
        "<data dir>/service/<chain id>-<marketplace>.sqlite3, where `modex worker` claims "
        "its vouchers)",
    )
    p.add_argument(
        "--nonce-db",
        metavar="FILE",
        help="a SQLite file for the state: the same as --state FILE (kept for old command lines)",
    )
    p.add_argument(
        "--free-calls",
        type=int,
        default=0,
        metavar="N",
        help="free calls per address before a licence, subscription or voucher is needed "
        "(counted in the state store) (default: %(default)s)",
    )
    add_node_options(
        p,
        "--config",
        "--data-dir",
        "--chain",
        "--deployment",
        chain=("URL", "JSON-RPC URL of the chain buyers pay on (default: the configuration's)"),
    )


# Threads per worker (gunicorn's gthread): each waits on the batcher while its request's texts
# run, so a worker takes up to this many requests at once; more wait in the listen backlog.
THREADS_PER_WORKER = 64
# Seconds a worker may go without a heartbeat before gunicorn replaces it: loading the model
# (before the first heartbeat) takes tens of seconds on a busy machine.
WORKER_TIMEOUT = 300
STOP_TIMEOUT = 10  # seconds workers get to finish their requests on SIGTERM


def cmd_serve(args) -> int:
    """Serve MODEL_DIR as listing --model-id over HTTP (POST /v1/infer, GET /v1/models: see
    docs/inference-api.md), to the holders of a licence for it (Marketplace.hasLicense on the
    configured chain). Once it serves it prints its URL; a buyer calls it with `modex call
    MODEL_ID TEXT... --url URL`."""
    if args.processes < 1:
        raise ConfigError(f"--processes must be at least 1 (got {args.processes})")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1 (got {args.workers})")
    if not 0 <= args.port <= 65535:  # werkzeug bound 70000 as port 4464 (70000 mod 65536)
        raise ConfigError(f"--port must be from 0 to 65535 (got {args.port})", key="port")
    if args.model_id < 0:  # requests name a uint256: a negative id could never be called
        raise ConfigError(f"--model-id must be the listing's id, 0 or more (got {args.model_id})")
    if args.free_calls < 0:
        raise ConfigError(f"--free-calls must be 0 or more (got {args.free_calls})")
    if args.state and args.nonce_db:
        raise ConfigError("give --state or --nonce-db, not both (--nonce-db FILE is --state FILE)")
    if not (Path(args.model_dir) / "config.json").is_file():  # before any chain call or process
        raise ConfigError(
            f"{args.model_dir} is not a model directory (no config.json); pass the "
            f"folder `modex train` wrote or one you downloaded",
            model_dir=args.model_dir,
        )
    config = config_from_args(args)
    if config.chain == "embedded":
        raise ConfigError(
            "modex serve needs a chain it can share with buyers: pass --chain "
            "http://HOST:PORT (the embedded chain lives inside `modex up`)",
            key="chain",
        )
    chain = Stack(config).chain  # checked here, before any model is loaded
    sock = _listening_socket(args)  # a refusal here leaves no file or process behind
    try:
        state = (
            args.state
            or args.nonce_db
            or config.service_store_at(chain.chain_id, chain.marketplace.address)
        )
        open_service_store(state).close()  # reachable? said here, once, not by every worker
    except BaseException:
        sock.close()
        raise
    return ServiceServer(args, sock, state, chain).serve()


def _workers(args) -> int:
    return args.workers or (2 if args.processes == 1 else 1)


def _banner(args, port: int, dtype: str, routes: list[str], chain_id: int, market: str) -> None:
    """Say, once it serves, where and how: the URL `modex call --url` takes and its routes."""
    shape = (
        f"{_workers(args)} workers"
        if args.processes == 1
        else (f"{args.processes} processes x {_workers(args)} workers")
    )
    url = service_url(args.host, port)
    print(
        f"serving model {args.model_id} ({dtype}, {shape}) at {url} ({', '.join(routes)}; "
        f"chain {chain_id}, marketplace {market})",
        flush=True,
    )
    to = "" if url == service_url() else f" --url {url}"
    print(f"licence holders call it with: modex call {args.model_id} TEXT...{to}", flush=True)


def _routes(app) -> list[str]:
    """The app's routes as "METHOD /path", from its URL map (what it really answers)."""
    return [
        f"{method} {rule.rule}"
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}, reverse=True)
    ]


def _listening_socket(args) -> socket.socket:
    """The socket every worker accepts on, at --host:--port."""
    try:
        return socket.create_server((args.host, args.port), backlog=256)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror}; stop what "
            f"uses that port or choose another --port",
            key="port",
        ) from None


class ServiceServer(BaseApplication):
    """gunicorn, embedded: this process is its master, and ``sock`` (listening) becomes
    gunicorn's, which closes it when it stops; each of --processes workers builds its own app
    after the fork (``load``). The last worker to be ready prints the banner, once."""

    def __init__(self, args, sock: socket.socket, state, chain):
        self.args, self.state = args, str(state)
        self.port = sock.getsockname()[1]
        self.fd = sock.detach()
        self.chain_id, self.market = chain.chain_id, chain.marketplace.address
        self.ready = multiprocessing.Value("i", 0)  # workers that have served, in shared memory
        self.parts: tuple = ()  # in a worker: what it closes when it exits
        super().__init__()

    def load_config(self) -> None:
        settings = {
            "bind": [f"fd://{self.fd}"],
            "workers": self.args.processes,
            "worker_class": "gthread",
            "threads": THREADS_PER_WORKER,
            "timeout": WORKER_TIMEOUT,
            "graceful_timeout": STOP_TIMEOUT,
            "loglevel": "warning",
            "control_socket_disable": True,  # its default path is one per user, not per server
            "proc_name": f"modex-serve-{self.args.model_id}",
            "post_worker_init": self._worker_ready,
            "worker_exit": self._worker_exit,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        """In a worker, after the fork: its chain client, model, batcher, state store and app."""
        args = self.args
        try:
            chain = Stack(config_from_args(args)).chain
            predictor = Predictor(
                args.model_dir, dtype=args.dtype, max_length=args.max_length, backend=args.backend
            )
            batcher = DynamicBatcher(
                predictor,
                max_batch_size=args.max_batch_size,
                max_wait_ms=args.max_wait_ms,
                max_queue=args.max_queue,
                workers=_workers(args),
            )
            if args.processes > 1:  # after the batcher, which splits the whole machine
                # torch is heavy: imported late, deliberately, so that `modex serve --help` and a
                # refusal start fast (the Predictor above has loaded it by now).
                import torch

                cores = os.cpu_count() or 1
                torch.set_num_threads(max(1, cores // (args.processes * _workers(args))))
            store = open_service_store(self.state)
        except ModexError as exc:  # one sentence, and the master stops: nothing would serve
            print(f"modex: error: {exc}", file=sys.stderr, flush=True)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        service = InferenceService(
            {args.model_id: batcher},
            has_license=onchain_has_license(chain),
            chain_id=chain.chain_id,
            verifying_contract=chain.marketplace.address,
            store=store,
            free_calls={args.model_id: args.free_calls},
            **onchain_channel_options(chain),  # vouchers, when the deployment has Channels
        )
        app = create_app(service)
        self.parts = (batcher, store, predictor.dtype, _routes(app))
        return app

    def _worker_ready(self, worker) -> None:
        with self.ready.get_lock():
            self.ready.value += 1
            last = self.ready.value == self.args.processes
        if last:
            _, _, dtype, routes = self.parts
            _banner(self.args, self.port, dtype, routes, self.chain_id, self.market)

    def _worker_exit(self, arbiter, worker) -> None:
        if self.parts:
            batcher, store, *_ = self.parts
            batcher.close()
            store.close()

    def serve(self) -> int:
        """Run the master until SIGTERM or Ctrl-C (0), or until a worker could not start."""
        master = os.getpid()
        try:
            self.run()
        except SystemExit as stop:
            if os.getpid() != master:  # a worker leaves through here: let it exit
                raise
            code = stop.code
        except HaltServer as halted:
            # gunicorn's halt() tells every worker to stop, then reaps them; one more worker that
            # failed to boot meanwhile (two at once, on a loaded machine) raises out of it.
            code = halted.exit_status
        else:
            code = 0
        if code in (Arbiter.WORKER_BOOT_ERROR, Arbiter.APP_LOAD_ERROR):
            raise ModexError(
                "a serving process could not start (its message is above); the server stopped"
            )
        if code:
            raise ModexError(f"the server stopped with code {code}; see its messages above")
        return 0
