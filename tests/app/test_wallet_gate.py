"""The wallet gate of a hosted exchange (app.wallet): unlocking backs off after wrong passwords
(per session and per address), a session sees only its own wallets, no message names a server
path, the faucet is a demo exchange's and limited, and "unlock to buy" returns to the model page."""

from __future__ import annotations

import re

from eth_account import Account

from app.ui_state import UiState
from app.wallet import FaucetLedger
from modex.commands import up
from tests.app.conftest import FAST_SCRYPT, post, publish_listing, settle
from tests.app.test_siwe import sign_in

PASSWORD = "gate password 1"


def flashes(client) -> str:
    return " ".join(
        re.findall(
            r'class="flash [^"]*"[^>]*>([^<]*)<', client.get("/wallet/").get_data(as_text=True)
        )
    )


def listed_wallets(client) -> list[str]:
    html = client.get("/wallet/").get_data(as_text=True)
    select = (
        html.split('name="address">')[1].split("</select>")[0] if 'name="address">' in html else ""
    )
    return re.findall(r"0x[0-9a-fA-F]{40}", select)


def create_wallet(client) -> str:
    r = post(client, "/wallet/create", {"password": PASSWORD, "confirm": PASSWORD})
    assert r.status_code == 302, r.get_data(as_text=True)
    return client.get("/wallet/").get_data(as_text=True).split('id="address">')[1].split("<")[0]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unlock_backs_off_per_session_and_address_and_names_no_path(app, stack):
    clock = Clock()
    app.extensions["modex.unlock_backoff"].clock = clock
    owner, other = app.test_client(), app.test_client()
    address = create_wallet(owner)
    post(owner, "/wallet/lock")
    for _ in range(5):
        post(owner, "/wallet/unlock", {"address": address, "password": "wrong password"})
        said = flashes(owner)
        assert "wrong password" in said and "try again" not in said
        assert str(stack.config.data_dir) not in said and ".json" not in said and "/" not in said
    # The sixth wrong one makes both this session and this address wait; nothing is tried meanwhile,
    # the right password included, in this session or another.
    post(owner, "/wallet/unlock", {"address": address, "password": "wrong again"})
    post(owner, "/wallet/unlock", {"address": address, "password": PASSWORD})
    said = flashes(owner)
    assert re.search(r"try again in (\d+) seconds", said) and "unlocked" not in said, said
    post(other, "/wallet/unlock", {"address": address, "password": PASSWORD})
    assert "try again in" in flashes(other)
    clock.now += 31
    post(owner, "/wallet/unlock", {"address": address, "password": PASSWORD})
    assert "unlocked" in flashes(owner)
    # Each further failure after the free ones doubles the wait; a success clears it.
    backoff = app.extensions["modex.unlock_backoff"]
    for _ in range(6):
        backoff.failed("k")
    assert backoff.wait_s("k") == 30
    backoff.failed("k")
    assert backoff.wait_s("k") == 60
    backoff.succeeded("k")
    assert backoff.wait_s("k") == 0


def test_a_session_sees_only_its_own_wallets(app, stack):
    first, second, third = app.test_client(), app.test_client(), app.test_client()
    created = create_wallet(first)
    key = Account.create()
    r = post(second, "/wallet/import", {"private_key": key.key.hex(), "password": PASSWORD})
    assert r.status_code == 302
    demo = {s.address for s in stack.demo_accounts.values()}
    assert set(listed_wallets(first)) == demo | {created}
    assert set(listed_wallets(second)) == demo | {key.address}
    # A visitor who signs in with the imported key's account sees that wallet, and no other.
    assert set(listed_wallets(third)) == demo
    sign_in(third, key, stack.chain.chain_id)
    assert set(listed_wallets(third)) == demo | {key.address}
    # Outside demo mode the demo wallets are not offered either.
    hosted = up.create_ui(stack, demo=False, extra={"TESTING": True, "MODEX_SCRYPT_N": FAST_SCRYPT})
    assert listed_wallets(hosted.test_client()) == []


def test_the_faucet_is_limited_per_address(app, stack):
    clock = Clock()
    app.extensions["modex.faucet"] = FaucetLedger(UiState(":memory:"), clock=clock)
    client = app.test_client()
    create_wallet(client)
    post(client, "/wallet/faucet")
    assert "Sent 10 ETH" in flashes(client)
    post(client, "/wallet/faucet")
    said = flashes(client)
    assert "once per 10 minutes: try again in 600 seconds" in said and "Sent" not in said
    for _ in range(2):
        clock.now += 601
        post(client, "/wallet/faucet")
        assert "Sent 10 ETH" in flashes(client)
    clock.now += 601
    post(client, "/wallet/faucet")
    assert "3 times already, its limit" in flashes(client)
    assert "30 ETH" in client.get("/wallet/").get_data(as_text=True)


def test_no_faucet_outside_demo_mode(stack):
    hosted = up.create_ui(stack, demo=False, extra={"TESTING": True, "MODEX_SCRYPT_N": FAST_SCRYPT})
    client = hosted.test_client()
    create_wallet(client)
    assert 'id="faucet-button"' not in client.get("/wallet/").get_data(as_text=True)
    post(client, "/wallet/faucet")
    assert "This node has no faucet" in flashes(client)


def test_unlock_to_buy_returns_to_the_model_page(client, stack, tmp_path):
    # A listing of its own: the session's other tests may already have bought the shared ones,
    # and a model page shows no buy form to its licence holder.
    model = f"/models/{publish_listing(stack, tmp_path, 'unlock-to-buy', 'Unlock to buy')}"
    settle(stack)
    for headers in ({"Referer": f"http://localhost{model}"}, {}):
        r = post(client, f"{model}/buy", {"max_price": "0.1"}, headers=headers)
        assert r.status_code == 302 and r.headers["Location"] == f"/wallet/?next={model}"
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert f'name="next" value="{model}"' in page
    buyer = stack.demo_accounts["buyer"].address
    r = post(
        client, "/wallet/unlock", {"address": buyer, "password": up.DEMO_PASSWORD, "next": model}
    )
    assert r.status_code == 302 and r.headers["Location"] == model
    page = client.get(model)
    assert page.status_code == 200 and 'id="buy-button"' in page.get_data(as_text=True)
