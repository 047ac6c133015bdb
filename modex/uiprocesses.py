"""A hosted exchange's UI served by several processes sharing its port (`modex up --hosted
--ui-processes N`; config `ui_processes`, by default one per core).

One Python process serves pages on one core at a time (the GIL); under load the UI of `modex
up` held one core while the other idled. The process that runs the exchange (its chain, index
follower, worker, gateway) serves the UI as before, and N-1 more processes serve it beside it,
accepting connections on the same listening socket: the kernel hands each new connection to one
of them. They are started fresh (multiprocessing "spawn", not fork: a fork would copy the
exchange's threads and locks mid-flight), each building the app from the exchange's
configuration: the chain over its RPC URL, the index file (read-only: the follower writes it),
the store, the key vault (file-locked), the served models' registry, and the UI's shared state
(app.ui_state: sign-in nonces and jobs), with the same session key, so that any process
answers any request of any visitor.

Only a hosted exchange runs more than one: a server-held wallet is unlocked in one process's
memory, and the embedded chain lives in the memory of the process that runs it. A process that
ends is started again; each stops when the exchange stops, or by itself when its parent is gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass

from node.config import Config
from node.errors import ConfigError, ModexError

log = logging.getLogger(__name__)

START_TIMEOUT = 180.0  # seconds a new UI process may take to import, build its app and be ready
STOP_TIMEOUT = 15.0  # seconds it may take to finish its requests and close, before SIGKILL
PARENT_CHECK_EVERY = 1.0  # seconds between a UI process's checks that its parent still runs
RESTART_EVERY = 10.0  # seconds at least between the starts of one process slot
AUTOMATIC_MAX = 8  # ui_processes 0 starts one per core, up to this many (each holds its app)


def ui_process_count(config: Config) -> int:
    """How many processes serve the UI: ``ui_processes``, or (0) one per core (at most
    AUTOMATIC_MAX) for a hosted exchange on a chain reached over RPC and one otherwise;
    ConfigError when more than one cannot share the exchange's state."""
    wanted = config.ui_processes
    where = config.sources.get("ui_processes", "default")
    if wanted == 0:
        if not config.hosted or config.is_embedded_chain:
            return 1
        return max(1, min(AUTOMATIC_MAX, len(os.sched_getaffinity(0))))
    if wanted > 1 and not config.hosted:
        raise ConfigError(
            f"ui_processes ({where}) is {wanted}, and only a hosted exchange runs its UI in "
            "several processes (a wallet unlocked on this server lives in one process's "
            "memory): add --hosted, or leave out --ui-processes",
            key="ui_processes",
        )
    if wanted > 1 and config.is_embedded_chain:
        raise ConfigError(
            f"ui_processes ({where}) is {wanted}, and the embedded chain lives in this "
            "process's memory, out of the other processes' reach: use --chain local (the "
            "default) or a node's URL, or --ui-processes 1",
            key="ui_processes",
        )
    return wanted


@dataclass(frozen=True)
class UiProcessSpec:
    """What a UI process needs to build the app the exchange's own process serves."""

    config: Config  # the running exchange's (its chain is the RPC URL, its paths the run's)
    operator: str  # the worker's address (operator of the models published from the UI)
    funder: str | None  # the dev account the demo faucet pays from (None: no faucet)
    demo: bool
    demo_wallets: dict  # role -> address
    password: str  # the key vault's: publishing from the UI seals and keeps a content key
    secret_key: str  # the session cookie's key, the same in every process
    sock: socket.socket  # the UI's listening socket
    threads: int
    connection_limit: int
    parent_pid: int
    log_level: int  # the root logger's in the exchange's process

    def __repr__(self) -> str:  # never the password or the session key
        return f"UiProcessSpec(port={self.sock.getsockname()[1]}, threads={self.threads})"


class UiProcesses:
    """The exchange's extra UI processes: started (each ready before start returns), watched
    (one that ends is started again) and stopped."""

    def __init__(self, spec: UiProcessSpec, count: int):
        self.spec, self.count = spec, count
        self._context = multiprocessing.get_context("spawn")
        self._processes: list = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher = threading.Thread(target=self._watch, name="modex-ui-watch", daemon=True)

    def start(self) -> UiProcesses:
        try:
            with self._lock:
                self._processes = [self._start_one() for _ in range(self.count)]
                for process in self._processes:
                    self._wait_ready(process)
        except BaseException:
            self.stop()
            raise
        self._watcher.start()
        return self

    def _start_one(self):
        ready = self._context.Event()
        process = self._context.Process(
            target=run_ui_process, args=(self.spec, ready), name="modex-ui", daemon=False
        )
        process.start()
        process.modex_ready, process.modex_started = ready, time.monotonic()
        return process

    def _wait_ready(self, process) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not process.modex_ready.wait(0.2):
            if not process.is_alive():
                raise ModexError(
                    f"a UI process ended while starting (exit code {process.exitcode}); its "
                    "error is printed above"
                )
            if time.monotonic() > deadline:
                raise ModexError(f"a UI process was not ready in {START_TIMEOUT:.0f} s")

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            with self._lock:
                for i, process in enumerate(self._processes):
                    if process.is_alive() or self._stopping.is_set():
                        continue
                    if time.monotonic() < process.modex_started + RESTART_EVERY:
                        continue  # one that fails as it starts is tried again less often
                    log.warning(
                        "UI process %s ended (exit code %s); starting another",
                        process.pid,
                        process.exitcode,
                    )
                    self._processes[i] = self._start_one()

    def stop(self) -> None:
        """SIGTERM to each (it finishes its requests and closes), SIGKILL past STOP_TIMEOUT."""
        self._stopping.set()
        with self._lock:
            processes, self._processes = self._processes, []
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def run_ui_process(spec: UiProcessSpec, ready) -> None:
    """A UI process: the app over the exchange's configuration, served on the shared socket
    until SIGTERM, Ctrl-C or the parent's end."""
    # Imported here, in the new process: the parent's import of this module stays light.
    from waitress.server import create_server

    from app import create_app
    from app.inference import warm_models
    from app.resources import close_resources
    from modex.cli import LOG_FORMAT
    from modex.commands.up import freeze_startup_objects, ui_settings
    from node.served_dirs import ServedModelDirs
    from node.stack import Stack

    logging.basicConfig(level=spec.log_level, format=LOG_FORMAT)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stop_when_orphaned(spec.parent_pid)
    stack = Stack(spec.config, password=spec.password)
    app = warmer = server = None
    try:
        chain = stack.chain
        app = create_app(
            {
                **ui_settings(
                    config=spec.config,
                    chain=chain,
                    store=stack.store,
                    vault=stack.vault,
                    operator=spec.operator,
                    models=ServedModelDirs(spec.config.served_models_path(chain.chain_id)),
                    funder=spec.funder,
                    demo=spec.demo,
                    demo_wallets=spec.demo_wallets,
                ),
                "SECRET_KEY": spec.secret_key,
            }
        )
        warmer = warm_models(app)
        server = create_server(
            app,
            sockets=[spec.sock],
            threads=spec.threads,
            connection_limit=spec.connection_limit,
            ident="modex",
        )
        ready.set()
        freeze_startup_objects()
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.close()
        if warmer is not None:
            warmer.stop()
        if app is not None:
            close_resources(app)
        stack.close()


def stop_when_orphaned(parent_pid: int) -> None:
    """A thread that interrupts this process once its parent is gone (killed with SIGKILL, it
    could not stop its UI processes itself)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_EVERY)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="modex-ui-parent", daemon=True).start()
