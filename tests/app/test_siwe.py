"""Sign-In with Ethereum (app.auth): the happy path, every refusal (401 with a code), nonces spent
once and expiring, logout, the session cookie's flags, the Origin check beside the CSRF token, and
/api/wallet/connect only for the address the session signed in with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import siwe
from eth_account import Account
from eth_account.messages import encode_defunct

from app.auth import NonceStore
from app.ui_state import UiState
from modex.commands import up
from tests.app.conftest import csrf_token, post

HOST = "localhost"  # Flask's test client's host


def siwe_text(client, account, node_chain_id: int, *, nonce: str | None = None, **fields) -> str:
    """An EIP-4361 message for ``account`` to this node, with a fresh nonce unless given;
    ``fields`` override the message's (domain, uri, chain_id, expiration_time...)."""
    values = {
        "domain": HOST,
        "address": account.address,
        "uri": f"http://{HOST}",
        "version": "1",
        "chain_id": node_chain_id,
        "nonce": nonce or client.get("/auth/nonce").get_json()["nonce"],
        "issued_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "statement": "Sign in to this Modex exchange.",
    }
    values.update(fields)
    return siwe.SiweMessage(**values).prepare_message()


def signature(account, text: str) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()


def post_siwe(client, text: str, sig: str, headers: dict | None = None, **kw):
    return client.post(
        "/auth/siwe",
        json={"message": text, "signature": sig},
        headers={"X-CSRFToken": csrf_token(client), **(headers or {})},
        **kw,
    )


def sign_in(client, account, chain_id: int) -> None:
    """What the page does before connecting a browser wallet (modex.js signIn)."""
    text = siwe_text(client, account, chain_id)
    r = post_siwe(client, text, signature(account, text))
    assert r.status_code == 200 and r.get_json() == {"address": account.address}, r.get_json()


def connect(client, address: str):
    return client.post(
        "/api/wallet/connect",
        json={"address": address},
        headers={"X-CSRFToken": csrf_token(client)},
    )


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_sign_in_binds_the_session_then_connect_and_logout(client, stack):
    account = Account.create()
    text = siwe_text(client, account, stack.chain.chain_id)
    r = post_siwe(client, text, signature(account, text))
    assert r.status_code == 200 and r.get_json() == {"address": account.address}
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert connect(client, account.address).get_json() == {"address": account.address}
    assert account.address in client.get("/wallet/").get_data(as_text=True)
    # The same message again: its nonce is spent.
    r = post_siwe(client, text, signature(account, text))
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "bad_nonce"
    r = client.post("/auth/logout", headers={"X-CSRFToken": csrf_token(client)})
    assert r.status_code == 200
    assert account.address not in client.get("/wallet/").get_data(as_text=True)
    r = connect(client, account.address)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "not_signed_in"


def test_the_cookie_is_secure_over_https(client, stack):
    account = Account.create()
    text = siwe_text(client, account, stack.chain.chain_id, uri=f"https://{HOST}")
    r = post_siwe(
        client,
        text,
        signature(account, text),
        headers={"Referer": f"https://{HOST}/wallet/"},  # Flask-WTF's check over HTTPS
        base_url=f"https://{HOST}",
    )
    assert r.status_code == 200, r.get_json()
    assert "Secure" in r.headers["Set-Cookie"] and "HttpOnly" in r.headers["Set-Cookie"]


LATER = datetime.now(UTC) + timedelta(hours=1)
EARLIER = datetime.now(UTC) - timedelta(hours=1)


@pytest.mark.parametrize(
    "fields, code",
    [
        ({"domain": "evil.example"}, "wrong_domain"),
        ({"uri": "http://evil.example"}, "wrong_uri"),
        ({"chain_id": 1}, "wrong_chain"),
        ({"nonce": "neverissuedhere1"}, "bad_nonce"),
        (
            {"expiration_time": iso(EARLIER), "issued_at": iso(EARLIER - timedelta(hours=1))},
            "expired",
        ),
        ({"not_before": iso(LATER)}, "not_yet_valid"),
    ],
)
def test_each_refusal_is_a_401_with_its_code(client, stack, fields, code):
    account = Account.create()
    text = siwe_text(client, account, stack.chain.chain_id, **fields)
    r = post_siwe(client, text, signature(account, text))
    assert r.status_code == 401, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == code and error["message"].endswith(".")
    assert connect(client, account.address).status_code == 401  # not signed in


def test_a_signature_by_another_key_is_refused(client, stack):
    account, other = Account.create(), Account.create()
    text = siwe_text(client, account, stack.chain.chain_id)
    r = post_siwe(client, text, signature(other, text))
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "bad_signature"
    text = siwe_text(client, account, stack.chain.chain_id)
    r = post_siwe(client, text, "0x1234")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "bad_signature"


def test_a_refused_attempt_spends_the_nonce(client, stack):
    account = Account.create()
    nonce = client.get("/auth/nonce").get_json()["nonce"]
    text = siwe_text(client, account, stack.chain.chain_id, nonce=nonce, chain_id=1)
    assert post_siwe(client, text, signature(account, text)).status_code == 401
    text = siwe_text(client, account, stack.chain.chain_id, nonce=nonce)
    r = post_siwe(client, text, signature(account, text))
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "bad_nonce"


def test_not_a_sign_in_message_is_a_400_sentence(client):
    r = post_siwe(client, "hello", "0x00")
    assert r.status_code == 400 and "EIP-4361" in r.get_json()["error"]["message"]


def test_nonces_expire_and_are_spent_once():
    now = [1000.0]
    store = NonceStore(UiState(":memory:"), ttl_s=60, clock=lambda: now[0])
    first, second = store.issue(), store.issue()
    assert first != second and len(first) >= 8
    assert store.spend(first) and not store.spend(first)
    now[0] += 61
    assert not store.spend(second)
    assert not store.spend("never-issued")


def test_a_nonce_one_ui_process_issued_is_spent_by_another_once(stack):
    """Two apps over one exchange, each with its own connection to the UI's shared state file,
    as two of a hosted exchange's UI processes: the nonce one issued signs in through the other,
    once."""
    first, second = (
        up.create_ui(stack, demo=False, extra={"TESTING": True}).test_client() for _ in range(2)
    )
    account = Account.create()
    text = siwe_text(first, account, stack.chain.chain_id)
    assert post_siwe(second, text, signature(account, text)).status_code == 200
    again = post_siwe(first, text, signature(account, text))
    assert again.status_code == 401 and again.get_json()["error"]["code"] == "bad_nonce"


def test_connect_needs_the_signed_in_address(client, stack):
    account, other = Account.create(), Account.create()
    r = connect(client, account.address)
    assert r.status_code == 401 and "Sign in with" in r.get_json()["error"]["message"]
    sign_in(client, account, stack.chain.chain_id)
    assert connect(client, other.address).status_code == 401
    assert connect(client, account.address.lower()).get_json()["address"] == account.address


def test_another_origin_is_refused_beside_the_csrf_token(client, stack):
    account = Account.create()
    sign_in(client, account, stack.chain.chain_id)
    token = csrf_token(client)
    for origin in ("http://evil.example", "null", "https://localhost"):
        r = client.post(
            "/api/wallet/connect",
            json={"address": account.address},
            headers={"X-CSRFToken": token, "Origin": origin},
        )
        assert r.status_code == 403 and "another site" in r.get_json()["error"]["message"], origin
    r = client.post(
        "/api/wallet/connect",
        json={"address": account.address},
        headers={"X-CSRFToken": token, "Referer": "http://evil.example/page"},
    )
    assert r.status_code == 403
    r = client.post(
        "/api/wallet/connect",
        json={"address": account.address},
        headers={"X-CSRFToken": token, "Origin": f"http://{HOST}"},
    )
    assert r.status_code == 200
    # Forms too: the same check sits beside the same CSRF token.
    r = post(client, "/wallet/lock", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "another site" in r.get_data(as_text=True)
    # Without the CSRF token the same-origin request is still refused.
    r = client.post(
        "/api/wallet/connect",
        json={"address": account.address},
        headers={"Origin": f"http://{HOST}"},
    )
    assert r.status_code == 400 and "CSRF" in r.get_json()["error"]["message"]


def test_the_eip4361_checks_run_on_abnfs_compiled_parser():
    """siwe checks every field of a sign-in with abnf's grammar rules: 8 ms of server CPU a
    sign-in on its pure-Python parser, 0.4 ms on the compiled one (abnf-rust, installed by
    tools/setup.sh from requirements.txt); abnf falls back to Python silently without it."""
    import abnf.parser

    assert abnf.parser._BACKEND == "rust"
