"""The local chain of `modex up`: an anvil this process starts, owns and stops, whose state is
kept in a folder (``<data dir>/chain/``) so that a restart finds the same chain.

The folder holds everything tied to this one chain; it is kept, and reset, as a whole:

    state.json          the chain itself: accounts, contract storage, blocks, transactions, logs
    state.backup.json   state.json as it was when the previous start loaded it
    genesis.json        which chain the folder belongs to (chain id, genesis block hash),
                        recorded once the chain has a block beyond genesis
    ...                 what the caller keeps beside it (`modex up`: the deployment record, the
                        index, the worker's state, the key vault of the models listed here)

Saving. anvil's own ``--state-interval`` rewrites its file in place (it opens it with O_TRUNC,
then writes), so a kill during a write would leave half a file and no other copy. Instead this
process asks anvil for its state (``anvil_dumpState``) every ``SAVE_INTERVAL_S`` when a block
was mined since the last save, and writes it atomically (temp file, fsync, rename): state.json
is always a whole state. A clean stop (Ctrl-C, SIGTERM) saves once more, then stops anvil by its
PID. If this process is killed (SIGKILL), the kernel sends anvil SIGTERM and it exits: what
happened since the last save (at most ``SAVE_INTERVAL_S``) is lost, and whoever follows the
chain (the indexer, the worker) sees the shorter chain as a reorg.

Loading. A state file that does not parse (cut short or damaged) is refused with what to do (go
back to the backup, or reset); nothing starts over it. anvil adds a new block 0, stamped with the
load time, at every load, and which one ``eth_getBlockByNumber(0)`` answers varies: the genesis
a chain grew from is read as block 1's parent. A folder whose state file is missing, or whose
genesis differs from the chain that loaded, holds files of a chain that no longer exists:
they are moved aside to ``<folder>-stale-<time>-<random>/`` (said in the log), and the chain
starts afresh.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

from web3.types import RPCEndpoint

from node.chain import connect
from node.devchain import Anvil, start_anvil
from node.errors import ChainError, ConfigError
from node.keyvault import atomic_write

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
BACKUP_FILE = "state.backup.json"
GENESIS_FILE = "genesis.json"
SAVE_INTERVAL_S = 1.0


class LocalChain:
    """A running anvil with its state folder; ``save()`` writes the state, ``stop()`` ends it."""

    def __init__(self, folder: Path, anvil: Anvil, *, timeout: float = 10.0):
        self.folder = folder
        self.anvil = anvil
        self.w3 = connect(anvil.url, timeout=timeout)
        self._saved_head: tuple[int, bytes] | None = None
        self._genesis_recorded = False
        self._stop = threading.Event()
        self._saver: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.anvil.url

    @property
    def state_path(self) -> Path:
        return self.folder / STATE_FILE

    def _head(self) -> tuple[int, bytes]:
        block = self.w3.eth.get_block("latest")
        return block["number"], bytes(block["hash"])

    def genesis(self) -> dict | None:
        """{"chain_id", "genesis_hash"}: the genesis this chain grew from (block 1's parent; see
        the module docstring); None while it has no block beyond genesis."""
        if self.w3.eth.block_number < 1:
            return None
        return {
            "chain_id": self.w3.eth.chain_id,
            "genesis_hash": self.w3.eth.get_block(1)["parentHash"].to_0x_hex(),
        }

    def _record_genesis(self) -> None:
        """Write genesis.json once the chain has a block beyond genesis (atomically)."""
        if self._genesis_recorded:
            return
        genesis = self.genesis()
        if genesis is not None:
            atomic_write(
                self.folder / GENESIS_FILE, json.dumps(genesis, indent=1).encode(), mode=0o600
            )
            self._genesis_recorded = True

    def save(self) -> bool:
        """Write anvil's state to state.json (atomically) if a block was mined since the last
        save; True when written. Raises what the RPC call raises (anvil gone)."""
        head = self._head()  # read before the dump: a block mined meanwhile is saved next time
        if head == self._saved_head:
            return False
        reply = self.w3.provider.make_request(RPCEndpoint("anvil_dumpState"), [])
        if "error" in reply:
            raise ChainError(f"anvil at {self.url} refused anvil_dumpState: {reply['error']}")
        atomic_write(
            self.state_path, gzip.decompress(bytes.fromhex(reply["result"][2:])), mode=0o600
        )
        self._saved_head = head
        self._record_genesis()
        return True

    def start_saving(self, interval: float = SAVE_INTERVAL_S) -> None:
        """Save every ``interval`` seconds in a daemon thread until ``stop()``."""

        def loop() -> None:
            failing = False
            while not self._stop.wait(interval):
                try:
                    self.save()
                    failing = False
                except Exception as exc:  # noqa: BLE001 - anvil gone or the disk refused: say so, retry
                    if not failing:
                        log.warning(
                            "could not save the local chain's state to %s (%s: %s); "
                            "retrying every %g s",
                            self.state_path,
                            type(exc).__name__,
                            exc,
                            interval,
                        )
                    failing = True

        self._saver = threading.Thread(target=loop, name="modex-chain-saver", daemon=True)
        self._saver.start()

    def stop(self) -> None:
        """Stop saving, save once more, stop anvil (by its PID)."""
        self._stop.set()
        if self._saver is not None:
            self._saver.join(timeout=30)
        try:
            self.save()
        except Exception as exc:  # noqa: BLE001 - anvil already gone: the last save stands
            log.warning(
                "could not save the local chain's state at stop (%s: %s); %s keeps the last save",
                type(exc).__name__,
                exc,
                self.state_path,
            )
        self.anvil.stop()


def open_local_chain(
    folder: str | Path,
    *,
    reset: bool = False,
    timeout: float = 10.0,
    save_interval: float | None = SAVE_INTERVAL_S,
) -> LocalChain:
    """Start anvil on a free 127.0.0.1 port with the state kept in ``folder`` (see the module
    docstring); ``reset`` deletes the folder first. ConfigError for a state it cannot load.
    ``save_interval`` None: no periodic saving (only ``save()`` and ``stop()``)."""
    folder = Path(folder)
    if reset and folder.exists():
        shutil.rmtree(folder)
        log.warning("--reset: deleted the local chain and everything tied to it (%s)", folder)
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob(".*.tmp"):  # a save cut short by a kill: never the state itself
        leftover.unlink()
    state = folder / STATE_FILE
    if state.exists():
        _keep_backup(state)
    elif any(folder.iterdir()):
        _set_aside(folder, keep=(), why=f"its chain state {state} is missing")
    try:
        anvil = start_anvil(
            extra_args=["--load-state", str(state)] if state.exists() else [], owned=True
        )
    except ChainError as exc:
        if not state.exists():
            raise
        raise _unusable(state, str(exc)) from None
    try:
        chain = LocalChain(folder, anvil, timeout=timeout)
        _check_genesis(chain)
        if state.exists():
            chain._saved_head = chain._head()  # what it loaded is saved already
        if save_interval:
            chain.start_saving(save_interval)
    except BaseException:
        anvil.stop()
        raise
    log.info("local chain at %s, state in %s", anvil.url, state)
    return chain


def _keep_backup(state: Path) -> None:
    """Check that ``state`` parses (anvil would refuse it anyway, with less to go on), then keep
    a copy of it as state.backup.json before anvil may overwrite it."""
    data = state.read_bytes()
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or "accounts" not in doc or "block" not in doc:
            raise ValueError("not an anvil state (no accounts and block)")
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _unusable(state, f"{type(exc).__name__}: {exc}") from None
    atomic_write(state.with_name(BACKUP_FILE), data, mode=0o600)


def _unusable(state: Path, reason: str) -> ConfigError:
    backup = state.with_name(BACKUP_FILE)
    back = ""
    if backup.is_file():
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(backup.stat().st_mtime))
        back = (
            f"to go back to the chain as it was at the start before ({when}), copy {backup} "
            f"over it; "
        )
    return ConfigError(
        f"the local chain's state {state} cannot be loaded ({reason.strip()}): nothing was "
        f"started over it; {back}to start a new, empty chain instead run `modex up --reset` "
        f"(deletes {state.parent}, with the content keys of the models listed on that chain)",
        key="chain",
        path=str(state),
    )


def _check_genesis(chain: LocalChain) -> None:
    """Set the folder's files aside when the chain that loaded is not the one recorded (a state
    file copied in from elsewhere); then record it. An empty chain is left unrecorded: nothing
    can have been made on it."""
    current = chain.genesis()
    if current is None:
        return
    try:
        recorded = json.loads((chain.folder / GENESIS_FILE).read_text())
    except FileNotFoundError:
        recorded = None
    except ValueError:
        recorded = {}
    if recorded == current:
        chain._genesis_recorded = True
        return
    if recorded is not None:
        _set_aside(
            chain.folder,
            keep=(STATE_FILE, BACKUP_FILE),
            why=f"the chain in {chain.state_path} is not the one they were made on "
            f"(genesis {current['genesis_hash']}, recorded {recorded.get('genesis_hash')})",
        )
    chain._record_genesis()


def _set_aside(folder: Path, *, keep: tuple[str, ...], why: str) -> None:
    """Move everything in ``folder`` but ``keep`` to ``<folder>-stale-<time>-<random>/``, and
    say so."""
    moved = [p for p in sorted(folder.iterdir()) if p.name not in keep]
    if not moved:
        return
    target = Path(
        tempfile.mkdtemp(
            prefix=f"{folder.name}-stale-{time.strftime('%Y%m%d-%H%M%S')}-", dir=folder.parent
        )
    )
    for path in moved:
        path.rename(target / path.name)
    log.warning(
        "the local chain in %s starts afresh: %s, so the files beside it (%s) belong to "
        "a chain that no longer exists; moved them to %s",
        folder,
        why,
        ", ".join(p.name for p in moved),
        target,
    )
