"""Hosted mode (issue 16 §3; `modex up --hosted`, config key `hosted = true`): the server never
creates, imports or unlocks a keystore, the wallet page offers only the browser wallet (no demo
wallet), Sign-In with Ethereum and the demo faucet work, and the local mode keeps its keystores."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
from eth_account import Account

from modex import demo
from modex.commands import up
from node.config import load_config
from tests.app.conftest import FAST_SCRYPT, modex_up, post
from tests.app.test_siwe import connect, sign_in

PASSWORD = "hosted password 1"


@pytest.fixture
def hosted(stack):
    """The UI of the test exchange in hosted mode (a demo exchange: it has demo wallets and a
    faucet, so that the test sees neither wallet offered)."""
    return up.create_ui(
        stack,
        demo=True,
        extra={"TESTING": True, "MODEX_SCRYPT_N": FAST_SCRYPT, "MODEX_HOSTED": True},
    )


def stored_wallets(stack) -> set[str]:
    folder = stack.config.data_dir / "wallets"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def keystore_requests(stack) -> dict[str, dict]:
    """Every keystore route with a request that local mode would carry out."""
    seller = stack.demo_accounts["seller"].address
    return {
        "/wallet/create": {"password": PASSWORD, "confirm": PASSWORD},
        "/wallet/import": {"private_key": Account.create().key.hex(), "password": PASSWORD},
        "/wallet/unlock": {"address": seller, "password": demo.DEMO_PASSWORD},
    }


def test_every_keystore_route_is_refused(hosted, stack):
    before = stored_wallets(stack)
    for path, form in keystore_requests(stack).items():
        client = hosted.test_client()
        r = post(client, path, form)
        text = r.get_data(as_text=True)
        assert r.status_code == 403, (path, text[:300])
        assert "never holds anyone" in text and "browser wallet" in text, path
        r = post(client, path, form, headers={"Accept": "application/json"})
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "hosted_no_keystores"
        page = client.get("/wallet/").get_data(as_text=True)
        assert 'id="address"' not in page, path  # nothing unlocked in this session
    assert stored_wallets(stack) == before


def test_local_mode_still_creates_and_unlocks_keystores(app, stack):
    """The same requests in local mode (the contrast that shows the refusals are hosted mode's)."""
    for path, form in keystore_requests(stack).items():
        r = post(app.test_client(), path, form)
        assert r.status_code == 302, (path, r.get_data(as_text=True)[:300])


def test_the_wallet_page_offers_only_the_browser_wallet(hosted, app, stack):
    demo_addresses = [signer.address for signer in stack.demo_accounts.values()]
    page = hosted.test_client().get("/wallet/").get_data(as_text=True)
    assert 'id="eip1193-connect"' in page and 'id="hosted-note"' in page
    for absent in ("/wallet/create", "/wallet/import", "/wallet/unlock", "private_key", "Password"):
        assert absent not in page, absent
    assert not any(address in page for address in demo_addresses)
    local = app.test_client().get("/wallet/").get_data(as_text=True)
    assert (
        "/wallet/create" in local and "/wallet/unlock" in local and 'id="hosted-note"' not in local
    )


def test_sign_in_with_ethereum_connects_a_browser_wallet_and_the_demo_faucet_funds_it(
    hosted, stack
):
    client = hosted.test_client()
    account = Account.create()
    sign_in(client, account, stack.chain.chain_id)
    assert connect(client, account.address).get_json() == {"address": account.address}
    page = client.get("/wallet/").get_data(as_text=True)
    assert re.search(rf'id="address">{account.address}<', page)
    assert 'id="faucet-button"' in page
    r = post(client, "/wallet/faucet")
    assert r.status_code == 302 and stack.chain.balance(account.address) > 0
    r = post(client, "/wallet/faucet")  # the demo faucet's limits hold in hosted mode too
    assert "try again in" in client.get("/wallet/").get_data(as_text=True)


def test_the_config_key_and_the_flag_set_hosted_mode(tmp_path):
    (tmp_path / "config.toml").write_text("hosted = true\n")
    assert load_config(None, env={}, data_dir=tmp_path).hosted is True
    assert load_config(None, env={}, data_dir=tmp_path / "elsewhere").hosted is False
    assert load_config(None, env={"MODEX_HOSTED": "1"}, data_dir=tmp_path / "x").hosted is True
    (tmp_path / "bad.toml").write_text('hosted = "perhaps"\n')
    with pytest.raises(Exception, match="hosted .* must be true or false"):
        load_config(tmp_path / "bad.toml", env={})


def test_modex_up_hosted_says_so_and_refuses_keystores(tmp_path):
    data = tmp_path / "node"
    # Without the demo there is no printed password: the node's own keys take it from the prompt.
    password = {"MODEX_PASSWORD": "node password for the test"}
    with modex_up(data, "--hosted", "--no-demo", "--chain", "embedded", env=password) as (
        url,
        log_path,
    ):
        said = log_path.read_text()
        assert "Hosted mode" in said and "browser wallet" in said and "Demo wallets" not in said
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        page = browser.open(f"{url}/wallet/", timeout=30).read().decode()
        assert 'id="hosted-note"' in page and "/wallet/create" not in page
        token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"csrf_token": token, "password": PASSWORD, "confirm": PASSWORD}
        ).encode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            browser.open(f"{url}/wallet/create", data=form, timeout=30)
        assert refused.value.code == 403 and "browser wallet" in refused.value.read().decode()
    assert not list((data / "wallets").glob("0x*.json"))
