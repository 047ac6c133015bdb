"""What a first visit trips on (issue 16 §5): Try it answers in its own box, a new vote shows as
pending until the index has it, and the demo wallets are named where one picks a wallet."""

from __future__ import annotations

import re

from modex import demo
from tests.app.conftest import post, publish_listing, settle, unlock


def try_box(html: str) -> str:
    start = html.index('id="try"')
    return html[start : html.index("</section>", start)]


def test_try_it_answers_in_its_box_and_a_new_vote_is_pending(
    client, stack, tmp_path, trained_model
):
    model_id = publish_listing(stack, tmp_path, "first-visit", "First visit")
    stack.models[model_id] = trained_model  # the node serves a real classifier for it
    settle(stack)
    page = f"/models/{model_id}"

    # No licence: no Try it box on the page, so the refusal is said on top.
    unlock(client, stack, "validator")
    post(client, f"{page}/try", {"text": "great phone"})
    html = client.get(page).get_data(as_text=True)
    assert 'id="try"' not in html
    assert re.search(r'class="flash error try-it" role="alert">[^<]*holds no licence', html)

    unlock(client, stack, "buyer")
    post(client, f"{page}/buy", {"max_price": "0.1"})
    settle(stack)  # the key is delivered: the box is there
    client.get(page)  # the purchase's flash is read
    r = post(client, f"{page}/try", {"text": "I love this phone"})
    assert r.headers["Location"].endswith(f"{page}#try")
    html = client.get(page).get_data(as_text=True)
    box = try_box(html)
    assert box.index('id="try-button"') < box.index('id="try-result"')
    assert "“I love this phone” →" in box
    assert "→" not in html[: html.index("<article")]  # not among the messages on top
    post(client, f"{page}/try", {"text": "  "})
    assert "Type a sentence to classify." in try_box(client.get(page).get_data(as_text=True))

    # A vote is on-chain before the index has it: the page says it is pending meanwhile.
    assert "no votes yet" in client.get(page).get_data(as_text=True)
    post(client, f"{page}/vote", {"score": "5"})
    html = client.get(page).get_data(as_text=True)
    assert "Your vote (5★) is recorded on-chain." in html
    assert "Your vote (5★) is pending" in html and "no votes yet" not in html
    settle(stack)
    html = client.get(page).get_data(as_text=True)
    assert "is pending" not in html and "5.0 from 1 voter" in html


def test_the_demo_wallets_are_named_where_one_picks_a_wallet(client, stack):
    html = client.get("/wallet/").get_data(as_text=True)
    select = html[html.index('<select name="address">') :]
    select = select[: select.index("</select>")]
    for role in demo.DEMO_ROLES:
        address = stack.demo_accounts[role].address
        assert f'<option value="{address}" >demo {role} · {address}</option>' in select
    # Unlocking posts the address, as before.
    assert unlock(client, stack, "seller") == stack.demo_accounts["seller"].address
