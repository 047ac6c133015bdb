"""The models a node serves, loaded on first use; one that does not load is unavailable, not fatal.

    served = ServedModels({7: "runs/sentiment", 8: "uploads/broken"})   # id -> model folder
    served[7]               -> a DynamicBatcher over ml.serve.Predictor (loaded once, shared)
    served[8]               -> raises ModelUnavailable: .reason names no server path

A seller's folder that does not load (a config that is not JSON, weights that are not
safetensors...) used to make every listing of the service answer 500 with the folder's path in
the message. Here it makes that one model unavailable: the failure is remembered (and logged once
with the folder, for the operator) until the folder changes or ``retry_after`` seconds pass;
then the next look-up loads it again, so a fixed folder is served without a restart.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping

from ml.serve import DynamicBatcher, ModelLoadError, Predictor, path_free
from node.errors import ModexError

log = logging.getLogger(__name__)


class ModelUnavailable(ModexError):
    """A served model that cannot answer (its folder does not load); ``reason`` says why without
    naming any server path. The endpoint answers its calls with 503 model_unavailable."""

    def __init__(self, model_id, reason: str):
        super().__init__(f"model {model_id} is unavailable: {reason}", model_id=model_id)
        self.model_id, self.reason = model_id, reason


def load_batcher(folder: str) -> DynamicBatcher:
    """The served form of a model folder: its Predictor behind a DynamicBatcher."""
    return DynamicBatcher(Predictor(folder), max_wait_ms=5.0)


def folder_state(folder: str):
    """What changes when a seller replaces a file of the folder (names, sizes, mtimes)."""
    try:
        with os.scandir(folder) as entries:
            return sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries)
    except OSError:
        return None


class ServedModels(Mapping):
    """model id -> served model (``load(folder)``, by default load_batcher), built on first use
    and shared by listings of the same folder. Reads the live ``dirs`` mapping (id -> folder; in
    `modex up`, the chain's served-models file, node.served_dirs), so a model published from the
    UI, by any of its processes, is served as soon as it is listed. Membership (the endpoint's 404
    check, before any signature) loads nothing; a load holds only its own folder's lock, so the
    other models keep answering while one loads or fails."""

    def __init__(self, dirs: Mapping, *, load=load_batcher, retry_after: float = 60.0):
        self._dirs = dirs
        self._load = load
        self.retry_after = retry_after
        self._batchers: dict[str, object] = {}
        self._failures: dict[str, tuple[object, float, str]] = {}  # folder -> state, when, reason
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def __getitem__(self, model_id):
        folder = str(self._dirs[model_id])
        served = self._batchers.get(folder)
        if served is not None:
            return served
        with self._lock:
            lock = self._locks.setdefault(folder, threading.Lock())
        with lock:
            if folder in self._batchers:  # loaded by another caller while this one waited
                return self._batchers[folder]
            state = folder_state(folder)
            failed = self._failures.get(folder)
            if failed and failed[0] == state and time.monotonic() - failed[1] < self.retry_after:
                raise ModelUnavailable(model_id, failed[2])
            try:
                served = self._load(folder)
            except ModelLoadError as exc:
                reason = exc.reason
            except Exception as exc:  # noqa: BLE001 - any fault preparing it: this model only
                reason = f"the model could not be prepared for serving: {path_free(exc, folder)}"
            else:
                self._failures.pop(folder, None)
                self._batchers[folder] = served
                return served
            self._failures[folder] = (state, time.monotonic(), reason)
        log.warning("model %s (%s) is unavailable: %s", model_id, folder, reason)
        raise ModelUnavailable(model_id, reason)

    def state(self, model_id) -> str:
        """How the model's service stands, without loading it: "ready" (loaded), "unavailable"
        (its folder failed to load; calls get 503 until it changes or retry_after passes) or
        "starting" (not loaded yet: the warm-up or the first call loads it)."""
        folder = str(self._dirs[model_id])
        if folder in self._batchers:
            return "ready"
        return "unavailable" if folder in self._failures else "starting"

    def __contains__(self, model_id):  # without loading it (Mapping's default would)
        return model_id in self._dirs

    def __iter__(self):
        return iter(list(self._dirs))

    def __len__(self):
        return len(self._dirs)
