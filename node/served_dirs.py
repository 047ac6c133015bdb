"""Which models a node serves for paid inference: model id -> local model folder, kept in a file.

`modex up` serves the models published from its UI (and the demo's) from their folders on this
machine. The mapping used to live only in the process: after a restart, or in another process of
the same UI, a model listed from the UI was "not served". ``ServedModelDirs`` is that mapping
(a ``MutableMapping[int, Path]``) kept in one JSON file, by default
``Config.served_models_path(chain_id)``, beside the worker's state (tied to the chain)::

    {"version": 1, "models": {"3": "/home/me/models/sentiment"}}

Writes (``models[3] = folder``, ``del models[3]``) take an exclusive ``flock`` on
``<file>.lock``, read the file as it is now, change it and replace it atomically (temp file,
fsync, rename, mode 0600): writers in several processes and threads never lose each other's
entries. Reads are a ``stat`` each: the file is read again only when its (mtime, size, inode)
changed, so every process sees the others' writes at its next look-up. Folders are stored
absolute and never pruned: one that is gone is reported unavailable by ml.served.ServedModels.

A missing file is an empty mapping. A file that cannot be read or is not such a document is
never overwritten: ``check()`` (run by `modex up` at start) and every write raise ConfigError
saying to repair or move it; a look-up while running logs a warning once and keeps answering
from the last good contents (empty if none), so one bad edit does not take the UI down.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import threading
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path

from node.errors import ConfigError
from node.keyvault import atomic_write, file_lock

log = logging.getLogger(__name__)

VERSION = 1
_MISSING = (-1, -1, -1)  # the stamp of a file that does not exist


class ServedModelDirs(MutableMapping[int, Path]):
    """model id -> model folder, persisted in ``path`` and shared by every process using it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()  # guards the cache below
        self._stamp: tuple[int, int, int] | None = None  # the file's stamp when last read
        self._models: dict[int, Path] = {}  # its contents then; replaced, never changed in place
        self._told: tuple[int, int, int] | None = None  # the bad file's stamp last warned about

    def __repr__(self) -> str:
        return f"ServedModelDirs({str(self.path)!r})"

    # -- the mapping ------------------------------------------------------------------------

    def __getitem__(self, model_id: int) -> Path:
        return self._current()[model_id]

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._current()

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._current()))

    def __len__(self) -> int:
        return len(self._current())

    def __setitem__(self, model_id: int, folder: str | os.PathLike) -> None:
        model_id = operator.index(model_id)
        path = Path(os.path.abspath(os.fspath(folder)))

        def put(models: dict[int, Path]) -> bool:
            if models.get(model_id) == path:
                return False  # already there (the demo sets its models at every start)
            models[model_id] = path
            return True

        self._change(put)

    def __delitem__(self, model_id: int) -> None:
        def remove(models: dict[int, Path]) -> bool:
            del models[model_id]  # KeyError when absent: nothing is written
            return True

        self._change(remove)

    def check(self) -> None:
        """Read the file now; ConfigError (saying what to do) when it is not usable."""
        self._current(strict=True)

    # -- internals --------------------------------------------------------------------------

    def _current(self, *, strict: bool = False) -> dict[int, Path]:
        """The file's contents, read again only when its stamp changed since the last read."""
        with self._lock:
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    self._stamp, self._models = self._read()
            except ConfigError as exc:
                if strict:
                    raise
                if self._told != stamp:
                    self._told = stamp
                    log.warning("%s; serving the models it held before", exc)
            return self._models

    def _stat(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return _MISSING
        except OSError as exc:
            raise self._unusable(exc) from None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> tuple[tuple[int, int, int], dict[int, Path]]:
        """(stamp, contents) of the file, both from one open (a concurrent rename cannot pair
        one file's stamp with another's contents)."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
        except FileNotFoundError:
            return _MISSING, {}
        except OSError as exc:
            raise self._unusable(exc) from None
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("version") != VERSION:
                raise ValueError(f"expected an object with version {VERSION}")
            entries = doc["models"]
            if not isinstance(entries, dict) or not all(
                isinstance(v, str) for v in entries.values()
            ):
                raise ValueError('"models" is not an object of model id -> folder')
            models = {int(k): Path(v) for k, v in entries.items()}
        except (ValueError, KeyError) as exc:
            raise ConfigError(
                f"{self.path} is not a served-models file ({exc}): repair it "
                f'({{"version": {VERSION}, "models": {{"<model id>": "<model folder>"}}}}) or move '
                "it aside (this node then serves none of the models it held)",
                path=str(self.path),
            ) from None
        return (st.st_mtime_ns, st.st_size, st.st_ino), models

    def _change(self, change: Callable[[dict[int, Path]], bool]) -> None:
        """Read-modify-write under the file's lock; ``change(models)`` edits a copy of the
        current contents in place and returns whether there is anything to write."""
        try:
            with file_lock(self.path):
                models = dict(self._current(strict=True))
                if not change(models):
                    return
                doc = {
                    "version": VERSION,
                    "models": {str(k): str(models[k]) for k in sorted(models)},
                }
                atomic_write(self.path, json.dumps(doc, indent=1).encode() + b"\n", mode=0o600)
                with self._lock:
                    self._stamp, self._models = self._stat(), models
        except OSError as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: OSError) -> ConfigError:
        return ConfigError(
            f"cannot use the served-models file {self.path}: {exc.strerror or exc}; "
            "make it (and its folder) readable and writable by this user",
            path=str(self.path),
        )
