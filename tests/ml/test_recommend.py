import pytest

from ml.recommend import Embedder, Recommender, bayesian_score
from node.errors import ConfigError

SENTIMENT_CARD = (
    "Classifies the sentiment of tweets and product reviews: negative, neutral, positive."
)
VISION_CARD = "Detects cats and dogs in photographs; an image classification network."
TOXIC_CARD = "Flags toxic or abusive comments in online discussions."


def listing(id, name, card, votes=()):
    return {"id": id, "name": name, "card": card, "vote_sum": sum(votes), "vote_count": len(votes)}


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


class Counting:
    """Wraps the real embedder and counts the texts it embeds (to see the cache work)."""

    def __init__(self, inner):
        self.inner, self.name, self.texts = inner, inner.name, 0

    def embed(self, texts):
        self.texts += len(texts)
        return self.inner.embed(texts)


def test_bayesian_average_keeps_one_vote_below_forty():
    assert bayesian_score(5, 1) == pytest.approx(35 / 11)
    assert bayesian_score(184, 40) == pytest.approx(214 / 50)
    assert bayesian_score(0, 0) == 3.0
    with pytest.raises(ValueError):
        bayesian_score(-1, 1)


def test_one_five_star_vote_does_not_outrank_forty_votes_of_4_6(embedder):
    one = listing(1, "Sentiment", SENTIMENT_CARD, [5])
    forty = listing(2, "Sentiment", SENTIMENT_CARD, [5] * 24 + [4] * 16)  # sum 184: mean 4.6
    ranked = Recommender(embedder).recommend([one, forty], need="tweet sentiment")
    assert [r.id for r in ranked] == [2, 1]
    assert ranked[0].explanation.endswith("4.6 from 40 buyers")
    assert ranked[1].explanation.endswith("5.0 from 1 buyer")
    assert ranked[0].similarity == ranked[1].similarity  # same card: the votes decided
    # and without any query at all, by votes alone (no model needed)
    assert [r.id for r in Recommender(embedder).recommend([one, forty])] == [2, 1]


def test_similarity_to_the_need_ranks_the_relevant_model_first(embedder):
    items = [
        listing(1, "Pet finder", VISION_CARD, [5] * 3),
        listing(2, "Moody", SENTIMENT_CARD),
        listing(3, "Guard", TOXIC_CARD),
    ]
    ranked = Recommender(embedder).recommend(
        items, need="is this customer review positive or negative?"
    )
    assert ranked[0].id == 2
    assert ranked[0].explanation.startswith('similar to your need "is this customer review')
    assert ranked[0].explanation.endswith("no votes yet")
    assert ranked[0].similarity > ranked[-1].similarity


def test_history_is_a_query_and_bought_models_are_left_out(embedder):
    items = [
        listing(1, "Moody", SENTIMENT_CARD),
        listing(2, "Pet finder", VISION_CARD),
        listing(3, "Review tone", "Sentiment of customer reviews: happy, unhappy or neutral."),
    ]
    ranked = Recommender(embedder).recommend(items, history=[1])
    assert [r.id for r in ranked] == [3, 2]
    assert ranked[0].explanation.startswith("similar to Moody (bought)")


def test_ranking_is_deterministic_and_ties_go_to_the_smaller_id(embedder):
    items = [listing(i, "Same", SENTIMENT_CARD, [4, 4]) for i in (10, 9, 11)]
    rec = Recommender(embedder)
    first = rec.recommend(items, need="sentiment")
    assert [r.id for r in first] == [9, 10, 11]
    assert rec.recommend(list(reversed(items)), need="sentiment") == first


def test_listing_embeddings_are_cached_on_disk_per_card(embedder, tmp_path):
    items = [listing(1, "Moody", SENTIMENT_CARD), listing(2, "Pet finder", VISION_CARD)]
    counting = Counting(embedder)
    first = Recommender(counting, tmp_path / "emb.sqlite").recommend(items, need="sentiment")
    assert counting.texts == 3  # two cards and the need
    again = Recommender(counting, tmp_path / "emb.sqlite")  # a new process, same cache file
    assert again.recommend(items, need="sentiment") == first
    assert counting.texts == 4  # only the need
    items[1]["card"] = TOXIC_CARD  # the seller changed the card: embedded again
    again.recommend(items, need="sentiment")
    assert counting.texts == 6


def test_listing_without_required_fields_is_refused(embedder):
    with pytest.raises(ConfigError, match="lacks"):
        Recommender(embedder).recommend([{"id": 1, "name": "x"}], need="x")
    assert Recommender(embedder).recommend([], need="x") == []


class Axes:
    """A fake embedder: each known text is a fixed unit vector (no model needed)."""

    name = "axes"
    vectors = {"Up.": [1.0, 0.0], "Down.": [-1.0, 0.0], "need up": [1.0, 0.0]}

    def embed(self, texts):
        import numpy as np

        return np.array([self.vectors[t] for t in texts], dtype=np.float32)


def test_an_explanation_never_calls_an_opposite_listing_similar():
    items = [listing(1, "Up", ""), listing(2, "Down", "", [5, 5])]
    up, down = Recommender(Axes()).recommend(items, need="need up")
    assert up.explanation == 'similar to your need "need up" (1.00); no votes yet'
    assert down.similarity == -1.0  # its cosine adds nothing to the score, and the text says so
    assert (
        down.explanation == 'ranked by votes (nothing like your need "need up"); 5.0 from 2 buyers'
    )
