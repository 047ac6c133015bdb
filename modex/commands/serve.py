"""`modex serve`: paid, EIP-712-signed inference for a model directory (ml/endpoint.py).

modex serve runs/sentiment --model-id 1 --chain http://127.0.0.1:8545 [--dtype int8 --workers 2 --port N]
modex serve ... --processes 2       (one server process per core, sharing the port and the nonces)
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import socket
import tempfile
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path

from werkzeug.serving import make_server

from ml.endpoint import InferenceService, create_app, onchain_has_license
from ml.replay import MemoryNonceStore, SqliteNonceStore
from ml.serve import DynamicBatcher, Predictor
from modex.commandline import SERVE_HOST, SERVE_PORT, add_command, add_node_options, service_url
from node.config import load_config
from node.errors import ConfigError, ModexError
from node.stack import Stack

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
        help="server processes sharing the port, each with its own copy of the model "
        "and an equal share of the cores: the HTTP work (parsing, JSON, signature "
        "checks) then runs in parallel too. Used nonces are shared through --nonce-db "
        "(a temporary file when not given) (default: %(default)s)",
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
        "--nonce-db",
        metavar="FILE",
        help="SQLite file for used nonces (default: in memory; with --processes, a temporary file)",
    )
    add_node_options(
        p,
        "--config",
        "--chain",
        chain=("URL", "JSON-RPC URL of the chain buyers pay on (default: the configuration's)"),
    )


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
    if not (Path(args.model_dir) / "config.json").is_file():  # before any chain call or process
        raise ConfigError(
            f"{args.model_dir} is not a model directory (no config.json); pass the "
            f"folder `modex train` wrote or one you downloaded",
            model_dir=args.model_dir,
        )
    config = load_config(args.config, chain=args.chain)
    if config.chain == "embedded":
        raise ConfigError(
            "modex serve needs a chain it can share with buyers: pass --chain "
            "http://HOST:PORT (the embedded chain lives inside `modex up`)",
            key="chain",
        )
    chain = Stack(config).chain  # checked here, before any model is loaded
    if args.processes == 1:
        server, batcher, dtype = _serve_setup(args, threads=None)
        _banner(args, server.port, dtype, _routes(server.app), chain)
        try:
            server.serve_forever()
        finally:
            batcher.close()
        return 0
    return _serve_processes(args, chain)


def _workers(args) -> int:
    return args.workers or (2 if args.processes == 1 else 1)


def _banner(args, port: int, dtype: str, routes: list[str], chain) -> None:
    """Say, once it serves, where and how: the URL `modex call --url` takes and its routes."""
    shape = (
        f"{_workers(args)} workers"
        if args.processes == 1
        else (f"{args.processes} processes x {_workers(args)} workers")
    )
    url = service_url(args.host, port)
    print(
        f"serving model {args.model_id} ({dtype}, {shape}) at {url} ({', '.join(routes)}; "
        f"chain {chain.chain_id}, marketplace {chain.marketplace.address})",
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


def _serve_setup(args, *, threads: int | None, sock=None):
    """(werkzeug server, DynamicBatcher, dtype) for this process; on ``sock`` when given."""
    chain = Stack(load_config(args.config, chain=args.chain)).chain
    predictor = Predictor(args.model_dir, dtype=args.dtype, max_length=args.max_length)
    batcher = DynamicBatcher(
        predictor,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        workers=_workers(args),
    )
    if threads:  # after the batcher, which splits the whole machine between its workers
        # torch is heavy: imported late, deliberately, so that `modex serve --help` and a refusal
        # start fast (the Predictor above has loaded it by now).
        import torch

        torch.set_num_threads(threads)
    nonces = SqliteNonceStore(args.nonce_db) if args.nonce_db else MemoryNonceStore()
    service = InferenceService(
        {args.model_id: batcher},
        has_license=onchain_has_license(chain),
        chain_id=chain.chain_id,
        verifying_contract=chain.marketplace.address,
        nonce_store=nonces,
    )
    fd = {"fd": sock.fileno()} if sock is not None else {}
    server = make_server(args.host, args.port, create_app(service), threaded=True, **fd)
    return server, batcher, predictor.dtype


def _serve_child(args, sock, ready, index: int) -> None:
    """One of --processes: its own model and batcher, serving on the parent's listening socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    parent = os.getppid()

    def orphaned() -> None:  # the parent was killed outright (SIGKILL): stop serving too
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=orphaned, name="modex-serve-parent-watch", daemon=True).start()
    threads = max(1, (os.cpu_count() or 1) // (args.processes * _workers(args)))
    server, _, dtype = _serve_setup(args, threads=threads, sock=sock)
    ready.put((index, dtype, _routes(server.app)))
    server.serve_forever()


def _listening_socket(args) -> socket.socket:
    """The socket all serving processes accept on, at --host:--port."""
    try:
        return socket.create_server((args.host, args.port), backlog=256)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror}; stop what "
            f"uses that port or choose another --port",
            key="port",
        ) from None


def _wait_until_serving(children, ready) -> list[tuple[str, list[str]]]:
    """(dtype, routes) each child reports once it serves; ModexError if one exits while
    starting."""
    served = []
    while len(served) < len(children):
        dead = [c for c in children if c.exitcode is not None]
        if dead:
            raise ModexError(
                f"serving process {dead[0].name} exited with code "
                f"{dead[0].exitcode} while starting; see its messages above"
            )
        with contextlib.suppress(queue.Empty):  # keep waiting while all children live
            served.append(ready.get(timeout=0.5)[1:])
    return served


def _stop_children(children) -> None:
    """Terminate the children still alive, then join the started ones (kill after 10 s)."""
    for child in children:
        if child.is_alive():
            child.terminate()
    for child in (c for c in children if c.pid is not None):  # started ones only
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()


def _serve_processes(args, chain) -> int:
    """Start --processes children on one listening socket; stop them all when one ends or on
    SIGTERM / Ctrl-C. A child that dies stops the server (exit 1): a supervisor restarts it."""

    def on_term(signum, frame):
        raise KeyboardInterrupt

    # first: a refusal here leaves no signal handler, temporary folder or process behind
    sock = _listening_socket(args)
    signal.signal(signal.SIGTERM, on_term)
    tmp = None
    if not args.nonce_db:  # the processes must share the used nonces, or a replay could pass
        tmp = tempfile.TemporaryDirectory(prefix="modex-serve-")
        args.nonce_db = os.path.join(tmp.name, "nonces.sqlite")
    port = sock.getsockname()[1]
    args.port = port
    ctx = multiprocessing.get_context("spawn")  # torch and threads: never fork
    ready = ctx.Queue()
    children = [
        ctx.Process(
            target=_serve_child, args=(args, sock, ready, i), name=f"modex-serve-{i}", daemon=True
        )
        for i in range(args.processes)
    ]
    failed = None
    try:
        for child in children:
            child.start()
        dtype, routes = _wait_until_serving(children, ready)[0]
        _banner(args, port, dtype, routes, chain)
        ended = wait([c.sentinel for c in children])
        failed = next(c for c in children if c.sentinel in ended)
        log.error(
            "serving process %s exited with code %s; stopping the others",
            failed.name,
            failed.exitcode,
        )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _stop_children(children)
        sock.close()
        if tmp is not None:
            tmp.cleanup()
    if failed is not None:
        raise ModexError(
            f"serving process {failed.name} exited with code {failed.exitcode}; "
            f"the server stopped (run it under a supervisor that restarts it)"
        )
    return 0
