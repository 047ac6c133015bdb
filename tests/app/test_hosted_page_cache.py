"""What a hosted exchange shows every visitor alike, kept a moment (app.page_cache): by key, for
at most its TTL, at most its size (least recently used out first), off at size 0; and the
market page shows a new listing as soon as the index has its block."""

from __future__ import annotations

from app.page_cache import PageCache
from tests.app.conftest import publish_listing, settle


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counter():
    made = []

    def make():
        made.append(1)
        return len(made)

    return made, make


def test_an_entry_is_kept_for_its_ttl_by_key():
    clock = Clock()
    cache = PageCache(ttl_s=2.0, max_entries=10, clock=clock)
    made, make = counter()
    assert cache.get_or_make("a", make) == 1
    clock.now += 1.9
    assert cache.get_or_make("a", make) == 1  # fresh: kept
    assert cache.get_or_make("b", make) == 2  # another key: made
    clock.now += 0.2
    assert cache.get_or_make("a", make) == 3  # 2.1 s old: made again
    assert (cache.hits, cache.misses) == (1, 3)


def test_the_least_recently_used_go_first_and_size_0_keeps_nothing():
    cache = PageCache(ttl_s=60.0, max_entries=2, clock=Clock())
    made, make = counter()
    cache.get_or_make("a", make)
    cache.get_or_make("b", make)
    cache.get_or_make("a", make)  # a used last: b goes when c comes
    cache.get_or_make("c", make)
    assert len(cache) == 2 and cache.get_or_make("a", make) == 1
    assert cache.get_or_make("b", make) == 4
    off = PageCache(ttl_s=60.0, max_entries=0)
    assert [off.get_or_make("a", make) for _ in range(2)] == [5, 6] and len(off) == 0


def test_the_market_shows_a_new_listing_once_its_block_is_indexed(app, stack, tmp_path):
    app.config["MODEX_LISTINGS_CACHE_TTL"] = 3600.0  # only a new block may refresh the page
    client = app.test_client()
    name = "A listing the cached market must show"
    assert name not in client.get("/").get_data(as_text=True)
    publish_listing(stack, tmp_path, "cached-market", name)
    settle(stack)
    assert name in client.get("/").get_data(as_text=True)


def test_a_model_page_shows_a_new_price_once_its_block_is_indexed(app, stack, tmp_path):
    """The page's sale terms come from the index (app.payments.shown_payments): the seller's
    new price shows as soon as the index has the block that set it."""
    model_id = publish_listing(stack, tmp_path, "cached-terms", "Terms kept a moment")
    settle(stack)
    client = app.test_client()
    assert "0.1 ETH" in client.get(f"/models/{model_id}").get_data(as_text=True)
    seller = stack.demo_accounts["seller"]
    stack.chain.transact(stack.chain.registry.functions.setPrice(model_id, 3 * 10**17), seller)
    settle(stack)
    assert "0.3 ETH" in client.get(f"/models/{model_id}").get_data(as_text=True)
