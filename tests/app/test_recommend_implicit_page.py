"""The Recommended page learns from purchases and votes in the index (ml.implicit, issue 15 §4):
once other buyers bought two listings together, a buyer holding one is shown the other with
"bought together with …" — and a co-buyer's one-star vote takes that back. An exchange of its
own, so the session one's listings and purchases stay as the page tests expect them; there the
index is also rebuilt and rolled back under the app's model, which ends as a fresh fold."""

from __future__ import annotations

from ml.implicit import ImplicitModel
from modex import demo
from modex.commands import up
from node import market
from node.indexer.feedback import FeedbackLog
from tests.app.conftest import (
    FAST_SCRYPT,
    PRICE,
    funded_validator,
    publish_listing,
    settle,
    unlock,
)


def test_recommended_page_shows_what_co_buyers_bought_together(own_exchange, tmp_path):
    exchange = own_exchange
    demo.demo_accounts(exchange)
    weather = publish_listing(exchange, tmp_path, "weather", "Weather oracle")
    rainfall = publish_listing(exchange, tmp_path, "rainfall", "Rainfall nowcaster")
    co_buyers = [funded_validator(exchange) for _ in range(2)]  # funded accounts of their own
    for account in co_buyers:
        for model_id in (weather, rainfall):
            market.buy(exchange.chain, account, model_id, max_price=PRICE)
    market.buy(exchange.chain, exchange.demo_accounts["buyer"], weather, max_price=PRICE)
    settle(exchange)

    app = up.create_ui(exchange, demo=True, extra={"TESTING": True, "MODEX_SCRYPT_N": FAST_SCRYPT})
    client = app.test_client()
    unlock(client, exchange, "buyer")
    html = client.get("/recommended").get_data(as_text=True)
    assert "Rainfall nowcaster" in html
    assert "bought together with Weather oracle by 2 buyers" in html

    # one co-buyer (its licence delivered: it may vote) rates the rainfall model one star
    market.vote(exchange.chain, co_buyers[0], rainfall, 1)
    settle(exchange)
    html = client.get("/recommended").get_data(as_text=True)
    assert "bought together with Weather oracle by 1 buyer;" in html

    # The app's model against the index itself: a fresh fold, a rebuild, a rollback (reorg).
    learnt = app.extensions["modex.implicit"]
    index = exchange.indexer()
    try:
        log = FeedbackLog(index)
        fresh = ImplicitModel()
        assert fresh.update(log) == 6  # five purchases and the vote
        assert learnt.digest() == fresh.digest()
        index.rebuild()  # the same log: nothing to fold again
        assert learnt.update(log) == 0 and learnt.digest() == fresh.digest()
        index.rollback(learnt.position[0] - 1)  # the vote's block is reorged away
        assert learnt.update(log) == 5  # the cursor's event is gone: folded again from the start
        again = ImplicitModel()
        again.update(log)
        assert learnt.digest() == again.digest() != fresh.digest()
    finally:
        index.close()
    html = client.get("/recommended").get_data(as_text=True)
    assert "bought together with Weather oracle by 2 buyers" in html
