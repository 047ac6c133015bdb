"""What the market keeps for every visitor alike (page_cache("listings"): the rendered listings)
never carries one visitor's session to another: a signed-in visitor with a connected wallet and
an anonymous one get the same kept listings, each with its own CSRF token and wallet, and the
"recommended" page, ranked for the session's wallet, is never kept."""

from __future__ import annotations

import re

from eth_account import Account

from app.helpers import short
from app.market import page_cache
from modex.commands import up
from tests.app.conftest import FAST_SCRYPT
from tests.app.test_siwe import connect, sign_in


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def test_a_kept_market_page_carries_no_other_visitors_session(stack, listed):
    hosted = up.create_ui(
        stack,
        demo=True,
        extra={"TESTING": True, "MODEX_SCRYPT_N": FAST_SCRYPT, "MODEX_HOSTED": True},
    )
    signed, anonymous = hosted.test_client(), hosted.test_client()
    account = Account.create()
    sign_in(signed, account, stack.chain.chain_id)
    assert connect(signed, account.address).status_code == 200
    mine = signed.get("/").get_data(as_text=True)
    wallet = short(account.address, 4)
    assert wallet in mine  # the page names the connected wallet: it is per session
    with hosted.app_context():
        cache = page_cache("listings")
    hits = cache.hits
    theirs = anonymous.get("/").get_data(as_text=True)
    assert cache.hits == hits + 1  # the anonymous visitor got the listings kept for the first
    assert wallet not in theirs
    assert csrf_of(theirs) != csrf_of(mine)
    assert "Tiny sentiment" in theirs and "Tiny sentiment" in mine  # the same listings

    kept = len(cache)
    signed.get("/?sort=recommended")
    anonymous.get("/?sort=recommended")
    assert len(cache) == kept and cache.hits == hits + 1  # ranked per wallet: never kept
