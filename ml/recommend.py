"""Rank listings for a buyer: embedding similarity blended with the on-chain vote score.

    rec = Recommender(cache_path=".modex/embeddings.sqlite")
    rec.recommend(listings, need="classify tweets by sentiment", history=[3], top_k=5)
        -> [Recommendation(id=7, score=0.71, explanation='similar to your need "classify
            tweets by sentiment" (0.62); 4.6 from 40 buyers', ...), ...]

Listings are plain dicts ``{"id", "name", "card", "vote_sum", "vote_count"}`` (the indexer's rows
mapped by the caller), so this module does not depend on the indexer.

Similarity: the base model (all-MiniLM-L6-v2, fp32 — int8 cuts its cosine similarity to 0.89),
mean pooling over the attention mask, L2-normalised, of ``name + ". " + card`` for each listing
and of each query: the buyer's free-text need and the cards of listings in their purchase history.
A listing's similarity is its best cosine over the queries; that query is named in the
explanation. Listing embeddings are cached on disk (SQLite) under (embedder, listing id,
SHA-256 of the embedded text), so a changed card is embedded again.

Votes: a Bayesian average ``(PRIOR_WEIGHT * PRIOR_MEAN + vote_sum) / (PRIOR_WEIGHT + vote_count)``
with PRIOR_MEAN = 3.0 (the middle of the 1..5 scale: no evidence means average) and
PRIOR_WEIGHT = 10 (ten phantom average votes). One 5-star vote gives 3.18; forty votes averaging
4.6 give 4.28, so the single vote cannot top the chart.

Implicit feedback (optional, ``implicit=``: an ml.implicit.ImplicitModel folded from the index):
co-buyers' purchases, subscriptions and ratings lift a listing that accounts chose together with
one in the buyer's history; its lift is in [0, 1) and weighs IMPLICIT_WEIGHT = 0.3 (three plain
co-buyers, lift 0.5, add 0.15: about a quarter of a perfect similarity's 0.6, so what others
bought reorders close calls but does not bury what the buyer asked for). Without implicit
signal a score is what it was. The explanation names it: "bought together with Moody by 3
buyers".

Score: ``SIMILARITY_WEIGHT * max(similarity, 0) + VOTE_WEIGHT * (bayes - 1) / 4
+ IMPLICIT_WEIGHT * lift``, rounded to 6 decimals; ties go to the smaller id, so the order is
deterministic. Listings the buyer already bought are left out.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ml import data
from node.errors import ConfigError, InputError

if TYPE_CHECKING:
    from ml.implicit import ImplicitModel

# Heavy packages load late (torch, transformers and numpy): each is imported in the
# function that uses it, marked `late (heavy)`, because the app and the CLI import this module
# at start-up.

log = logging.getLogger(__name__)

PRIOR_MEAN = 3.0
PRIOR_WEIGHT = 10.0
SIMILARITY_WEIGHT = 0.6
VOTE_WEIGHT = 0.4
IMPLICIT_WEIGHT = 0.3
EMBED_MAX_LENGTH = 256


def bayesian_score(
    vote_sum: float,
    vote_count: int,
    *,
    prior_mean: float = PRIOR_MEAN,
    prior_weight: float = PRIOR_WEIGHT,
) -> float:
    if vote_count < 0 or vote_sum < 0:
        raise InputError("vote_sum and vote_count cannot be negative")
    return (prior_weight * prior_mean + vote_sum) / (prior_weight + vote_count)


class Embedder:
    """Sentence embeddings from a BERT-style encoder: mean pooling, L2-normalised, fp32."""

    def __init__(self, model_dir=None, *, max_length: int = EMBED_MAX_LENGTH, batch_size: int = 16):
        from transformers import AutoModel, AutoTokenizer  # late (heavy)

        path = Path(model_dir) if model_dir else data.base_model_dir()
        self.model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.max_length = max_length
        self.batch_size = batch_size
        self.name = f"{path.name if model_dir else data.BASE_MODEL_NAME}/mean/{max_length}"

    def embed(self, texts: list[str]):
        """An (n, hidden) float32 numpy array of unit vectors, in input order."""
        import numpy as np  # late (heavy)
        import torch  # late (heavy)

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


class EmbeddingCache:
    """Listing embeddings on disk, keyed by (embedder, listing id, SHA-256 of the embedded text)."""

    def __init__(self, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (embedder TEXT, listing TEXT, text_sha256 TEXT,"
            " vector BLOB NOT NULL, PRIMARY KEY (embedder, listing, text_sha256))"
        )
        self._lock = threading.Lock()

    def get(self, embedder: str, listing: str, digest: str):
        import numpy as np  # late (heavy)

        with self._lock:
            row = self._db.execute(
                "SELECT vector FROM embeddings WHERE embedder=? AND listing=? AND text_sha256=?",
                (embedder, listing, digest),
            ).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype=np.float32)

    def put(self, embedder: str, listing: str, digest: str, vector) -> None:
        import numpy as np  # late (heavy)

        blob = np.asarray(vector, dtype=np.float32).tobytes()
        with self._lock:
            # an older card's vector for this listing is dead weight: keep one per listing
            self._db.execute(
                "DELETE FROM embeddings WHERE embedder=? AND listing=?", (embedder, listing)
            )
            self._db.execute(
                "INSERT INTO embeddings VALUES (?, ?, ?, ?)", (embedder, listing, digest, blob)
            )

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class Recommendation:
    id: object
    name: str
    score: float
    similarity: float
    rating: float  # the Bayesian average
    votes: int
    explanation: str


def _listing_text(listing: dict) -> str:
    return f"{listing.get('name') or ''}. {listing.get('card') or ''}".strip()


def id_order(listing_id) -> tuple:
    """Numeric ids in numeric order (9 before 10), anything else after, as text."""
    text = str(listing_id)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def _quote(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Recommender:
    def __init__(
        self,
        embedder=None,
        cache_path=None,
        *,
        prior_mean: float = PRIOR_MEAN,
        prior_weight: float = PRIOR_WEIGHT,
        similarity_weight: float = SIMILARITY_WEIGHT,
        vote_weight: float = VOTE_WEIGHT,
        implicit_weight: float = IMPLICIT_WEIGHT,
    ):
        self._embedder = embedder
        self.cache = EmbeddingCache(cache_path) if cache_path else None
        self.prior_mean, self.prior_weight = prior_mean, prior_weight
        self.similarity_weight, self.vote_weight = similarity_weight, vote_weight
        self.implicit_weight = implicit_weight

    @property
    def embedder(self):
        if self._embedder is None:  # loaded on first use: ranking by votes alone needs no model
            self._embedder = Embedder()
        return self._embedder

    def listing_vectors(self, listings: list[dict]):
        """One unit vector per listing, from the cache where the text is unchanged."""
        import numpy as np  # late (heavy)

        texts = [_listing_text(item) for item in listings]
        digests = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        name = getattr(self.embedder, "name", type(self.embedder).__name__)
        vectors = [None] * len(listings)
        if self.cache:
            for i, item in enumerate(listings):
                vectors[i] = self.cache.get(name, str(item["id"]), digests[i])
        missing = [i for i, v in enumerate(vectors) if v is None]
        if missing:
            fresh = self.embedder.embed([texts[i] for i in missing])
            for i, vec in zip(missing, fresh, strict=True):
                vectors[i] = vec
                if self.cache:
                    self.cache.put(name, str(listings[i]["id"]), digests[i], vec)
        log.debug("embedded %d of %d listings (rest cached)", len(missing), len(listings))
        return np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)

    def recommend(
        self,
        listings,
        *,
        need: str = "",
        history=(),
        top_k: int | None = 10,
        implicit: ImplicitModel | None = None,
    ) -> list[Recommendation]:
        """The listings ranked for this buyer (history: ids of listings they bought; implicit:
        what co-buyers chose together with them)."""
        import numpy as np  # late (heavy)

        listings = [dict(item) for item in listings]
        for item in listings:
            missing = {"id", "name", "vote_sum", "vote_count"} - set(item)
            if missing:
                raise ConfigError(f"listing {item.get('id')!r} lacks {sorted(missing)}")
        owned = {str(h) for h in history}
        by_id = {str(item["id"]): item for item in listings}
        # queries: (label for the explanation, listing index or None for the free-text need)
        query_labels = []
        if need and need.strip():
            query_labels.append(f'your need "{_quote(need)}"')
        bought = [by_id[h] for h in sorted(owned) if h in by_id]
        query_labels += [f"{_quote(item['name'], 40)} (bought)" for item in bought]
        candidates = [item for item in listings if str(item["id"]) not in owned]
        if not candidates:
            return []

        if query_labels:
            vectors = self.listing_vectors(candidates + bought)
            cand_vecs, bought_vecs = vectors[: len(candidates)], vectors[len(candidates) :]
            parts = [self.embedder.embed([need])] if need and need.strip() else []
            parts += [bought_vecs] if len(bought) else []
            queries = np.concatenate(parts)
            sims = cand_vecs @ queries.T  # (candidates, queries)
        else:
            sims = None
        lifts = implicit.lifts(owned) if implicit is not None else {}

        results = []
        for row, item in enumerate(candidates):
            count = int(item["vote_count"])
            vote_sum = float(item["vote_sum"])
            rating = bayesian_score(
                vote_sum, count, prior_mean=self.prior_mean, prior_weight=self.prior_weight
            )
            votes_text = (
                f"{vote_sum / count:.1f} from {count} buyer{'s' * (count != 1)}"
                if count
                else "no votes yet"
            )
            lift = lifts.get(str(item["id"]))
            lift_text = None
            if lift is not None:
                via = by_id.get(lift.via)
                lift_text = lift.explanation(
                    _quote(via["name"], 40) if via else f"Model #{lift.via}"
                )
            if sims is not None:
                best = int(np.argmax(sims[row]))
                similarity = round(float(sims[row, best]), 6)
                # A cosine <= 0 adds nothing to the score (max(similarity, 0)): not "similar".
                lead = (
                    f"similar to {query_labels[best]} ({similarity:.2f})"
                    if similarity > 0
                    else None
                    if lift_text
                    else f"ranked by votes (nothing like {query_labels[best]})"
                )
            else:
                similarity = 0.0
                lead = None if lift_text else "ranked by votes"
            explanation = "; ".join(part for part in (lead, lift_text, votes_text) if part)
            score = (
                self.similarity_weight * max(similarity, 0.0)
                + self.vote_weight * (rating - 1.0) / 4.0
                + self.implicit_weight * (lift.value if lift else 0.0)
            )
            results.append(
                Recommendation(
                    item["id"],
                    item["name"],
                    round(score, 6),
                    similarity,
                    round(rating, 6),
                    count,
                    explanation,
                )
            )
        results.sort(key=lambda r: (-r.score, id_order(r.id)))
        return results if top_k is None else results[:top_k]
