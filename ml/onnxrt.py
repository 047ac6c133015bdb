"""ONNX Runtime backend for the served classifiers: exported once, run by onnxruntime on CPU.

    path = exported_file(model, "runs/sentiment", int8=True)  # exports on first use, then reuses
    forward = OnnxForward(path, pad_token_id=0)
    forward([[101, 2307, 3042, 102]])                           # -> logits, a float tensor

The export is ``torch.onnx.export`` (the torch.export-based exporter: onnxscript; optimum does not
work with transformers 5) of the transformers model with eager attention, at opset ``OPSET``,
with ``input_ids`` and ``attention_mask`` of dynamic batch and sequence length. ("eager": the
SDPA graph ran ~5% slower here; the TorchScript exporter is deprecated and traced transformers'
mask code as constants: its logits were off by 2e-2 for padded texts.) int8 is
``onnxruntime.quantization.quantize_dynamic`` of that file: int8 weights per output channel,
activations quantized per batch.

The files live next to the model folder, never inside it (its files are the model hash):
``<model folder>.onnx/<key>-fp32.onnx`` and ``...-int8.onnx``, where the key is the folder's model
hash (node/content/manifest.py) and the export recipe, so a changed model is exported again and
its old files are removed. Each file is written under another name and renamed into place, so a
reader never sees half a file; one process exports at a time (a lock file), so the processes of
one server share one export.

OnnxForward takes the token id lists the Predictor hands PackedBert and returns logits [texts,
labels]; texts of about the same length run together (``PADDING``), as padding costs what real
tokens do. Its session uses as many intra-op threads as torch
is set to (DynamicBatcher splits the cores between its workers through torch), rebuilt if that
changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import threading
import warnings
from pathlib import Path

from node.content.manifest import build_manifest
from node.errors import ConfigError

# Heavy packages load late (torch, onnxruntime and its quantization, which loads onnx): each is
# imported in the function that uses it, marked `late (heavy)`, because ml/serve.py imports this
# module and the app and the CLI import that one at start-up.

log = logging.getLogger(__name__)

OPSET = 18
RECIPE = 1  # raise it when the export or quantization changes what it writes: files re-export
_SAMPLE = (2, 8)  # the example batch the exporter traces: batch and length > 1 stay dynamic


def cache_dir(model_dir) -> Path:
    """Where a model folder's exports live: beside it, ``<folder>.onnx``."""
    folder = Path(model_dir).resolve()
    return folder.with_name(folder.name + ".onnx")


def cache_key(model_dir) -> str:
    """The model hash's first 16 hex digits and the recipe: one key per model and export."""
    return f"{build_manifest(model_dir).model_hash.hex()[:16]}-r{RECIPE}-opset{OPSET}"


def exported_file(model, model_dir, *, int8: bool) -> Path:
    """The ONNX file of ``model`` (loaded from ``model_dir``, fp32 on CPU), exporting (and for
    int8 quantizing) it first when the cache has no file for this model and recipe."""
    folder, key = cache_dir(model_dir), cache_key(model_dir)
    try:
        folder.mkdir(exist_ok=True)
        lock = open(folder / ".lock", "w")  # noqa: SIM115 - held until the export is in place
    except OSError as exc:
        raise ConfigError(
            f"cannot write the ONNX export beside the model ({folder}: {exc.strerror}); make "
            f"its parent folder writable and that path free, or serve with --backend torch",
            path=str(folder),
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process exporting the same model: wait
        for partial in folder.glob("*.partial.onnx"):  # left by an export that was killed
            partial.unlink(missing_ok=True)
        fp32 = folder / f"{key}-fp32.onnx"
        if not fp32.is_file():
            _write_atomically(fp32, lambda tmp: _export(model, tmp))
        want = fp32
        if int8:
            want = folder / f"{key}-int8.onnx"
            if not want.is_file():
                _write_atomically(want, lambda tmp: _quantize(fp32, tmp))
        for old in folder.glob("*.onnx"):  # a changed model's files
            if not old.name.startswith(key):
                old.unlink(missing_ok=True)
    return want


def _write_atomically(dest: Path, write) -> None:
    """``write(tmp)`` to a file beside ``dest``, flushed to disk, then renamed onto ``dest``."""
    tmp = dest.with_name(f"{dest.stem}.{os.getpid()}.partial.onnx")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _to_debug(record: logging.LogRecord) -> bool:
    log.debug("%s", record.getMessage())
    return False


@contextlib.contextmanager
def _quiet():
    """The exporter prints its progress to stdout (modex serve's first line is its banner), warns
    about what it does not need (torchvision), and quantize_dynamic logs advice to the root
    logger: all of it goes to this module's debug log."""
    out = io.StringIO()
    root = logging.getLogger()
    root.addFilter(_to_debug)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(_to_debug)
    if out.getvalue().strip():
        log.debug("%s", out.getvalue().strip())


def _export(model, dest: Path) -> None:
    import torch  # late (heavy)

    batch, length = _SAMPLE[0], min(_SAMPLE[1], model.config.max_position_embeddings)
    ids = torch.ones(batch, length, dtype=torch.long)
    seq = torch.export.Dim("sequence", min=1, max=model.config.max_position_embeddings)
    axes = {0: torch.export.Dim("batch", min=1), 1: seq}
    model.set_attn_implementation("eager")
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with _quiet():
            torch.onnx.export(
                model,
                (),
                str(dest),
                kwargs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_shapes={"input_ids": axes, "attention_mask": axes},
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
            )
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; say what to do
        raise ConfigError(
            f"torch.onnx.export could not export {type(model).__name__} "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc) else ''}); "
            f"serve it with --backend torch",
            model=type(model).__name__,
        ) from exc
    finally:
        exporter_log.setLevel(level)


def _quantize(src: Path, dest: Path) -> None:
    # late (heavy): onnxruntime's quantization loads onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(src, dest, weight_type=QuantType.QInt8, per_channel=True)


# The padding a run of texts may add to their real tokens, as a share. Served int8 at 32 clients
# here (MiniLM classifier, batches of 16 random test texts): 115 req/s padding each batch whole,
# 149 with 0.5, 163 with 0.25, 179 with 0.1, 196 with 0.05, 187 with none (runs of one length).
PADDING = 0.05


def _runs(lengths: list[int]):
    """Consecutive index runs of ascending ``lengths`` whose padded size (count x longest) is at
    most (1 + PADDING) x their real tokens."""
    run: list[int] = []
    tokens = 0
    for k, n in enumerate(lengths):
        if run and (len(run) + 1) * n > (1 + PADDING) * (tokens + n):
            yield run
            run, tokens = [], 0
        run.append(k)
        tokens += n
    if run:
        yield run


class OnnxForward:
    """Logits of an exported classifier for token id lists, padded per batch, on CPU."""

    def __init__(self, path, *, pad_token_id: int):
        self.path = str(path)
        self.pad = pad_token_id
        self._lock = threading.Lock()
        self._session, self._threads = None, 0
        self._session_for_threads()  # a file onnxruntime cannot load fails here, not in a request
        self.inputs = [i.name for i in self._session.get_inputs()]

    def _session_for_threads(self):
        import onnxruntime as ort  # late (heavy)
        import torch  # late (heavy)

        threads = torch.get_num_threads()
        if threads != self._threads:
            with self._lock:
                if threads != self._threads:
                    options = ort.SessionOptions()
                    options.intra_op_num_threads = threads
                    options.log_severity_level = 3  # errors only
                    self._session = ort.InferenceSession(
                        self.path, options, providers=["CPUExecutionProvider"]
                    )
                    self._threads = threads
        return self._session

    def __call__(self, ids: list[list[int]]):
        """Logits [texts, labels] for token id lists (each with its special tokens), in order.

        Texts of similar length run together: a padded batch pays for every text as if it were
        the longest, so the texts (sorted by length) are cut into runs whose padding adds at
        most ``PADDING`` to their real tokens; each run is one session call.
        """
        import torch  # late (heavy)

        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        logits = [None] * len(ids)
        for run in _runs([len(ids[i]) for i in order]):
            rows = [order[k] for k in run]
            for i, row in zip(rows, self._padded([ids[i] for i in rows]), strict=True):
                logits[i] = row
        return torch.stack(logits)

    def _padded(self, ids: list[list[int]]):
        import numpy as np  # late (heavy)
        import torch  # late (heavy)

        longest = max(map(len, ids))
        input_ids = np.full((len(ids), longest), self.pad, dtype=np.int64)
        mask = np.zeros((len(ids), longest), dtype=np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        logits = self._session_for_threads().run(["logits"], {k: feed[k] for k in self.inputs})
        return torch.from_numpy(logits[0])
