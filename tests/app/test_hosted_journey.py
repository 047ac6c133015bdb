"""Issue 16's journey, every role from a browser wallet, in headless Chromium against `modex up
--hosted` on anvil + the IPFS daemon (both started here on 127.0.0.1, stopped by PID).

Each person is an EIP-1193 wallet injected as window.ethereum: an eth-account key in the test
signs what the page asks (personal_sign, eth_signTypedData_v4, eth_sendTransaction to anvil),
through Playwright's expose_function. A seller publishes the node's trained model from the
wallet (the node seals and pins; the wallet signs list, claimMetrics and setOperator); a buyer
signs in (SIWE), buys (Enter in the buy form goes through the wallet too), receives the key from
the node's worker, downloads and verifies it in the page, runs Try it and votes. Before the
download, a node that lies (another model's hash, its key wrapped to the buyer for this very
purchase, its archive) is refused, the page reading the chain through the wallet, and so is a
tampered archive; nothing is kept of either. Then a
validator stakes and names an attester, whose hot key alone carries the validator agent (run
here, as `modex validate --validator COLD` would) through the round, and the model turns
Verified. Every request of the journey is recorded: none carries a private key, the personal_sign
signature the encryption key is derived from, or the content key.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from modex.commands.validate import ml_evaluator
from modex.demo import DEMO_MODEL
from node.chain import Chain
from node.config import load_config
from node.content import keywrap, seal
from node.devchain import start_anvil
from node.fetch import find_delivery
from node.ipfsdaemon import start_ipfs_daemon
from node.signer import LocalSigner
from node.stack import Stack
from node.validator import ValidatorAgent
from tests.app.conftest import modex_up
from tests.app.test_browser import SHOTS, shot
from tests.app.test_browser_download import (
    KEY,
    PICKED_FILES,
    STAND_INS,
    chromium,  # noqa: F401 (a fixture: the module's Chromium, once the bundle is built)
    make_model,
    model_files,
    model_tar,
    sealed_tar,
)
from tests.app.test_browser_wallet_pay import InjectedWallet
from tests.node.modex_stack import time_travel

pytestmark = [
    pytest.mark.browser,
    pytest.mark.anvil,
    pytest.mark.kubo,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

NAME = "Journey sentiment"
# What a wallet answers from its own node: the download page reads the chain through it.
CHAIN_READS = ("eth_chainId", "eth_call", "eth_getLogs")


class Wallet(InjectedWallet):
    """The injected wallet, which also answers the page's reads of the chain from anvil."""

    def request(self, method: str, params_json: str) -> str:
        if method in CHAIN_READS:
            return json.dumps(self._rpc(method, json.loads(params_json)))
        return super().request(method, params_json)


@pytest.fixture(scope="module")
def hosted(tmp_path_factory, trained_model):
    """anvil, the IPFS daemon and `modex up --hosted` on them, the trained model in the node's
    models folder (what the seller publishes: the node serves Try it for it); yields (UI url,
    anvil url, the config a node of the test reads the same chain and store with)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("hosted-journey")
    data = root / "node"
    shutil.copytree(trained_model, data / "models" / DEMO_MODEL)
    with start_anvil() as anvil:
        daemon = start_ipfs_daemon()
        try:
            record = root / "deployments" / "31337.json"  # not the shared deployments/
            env = {"MODEX_DEPLOYMENT_FILE": str(record), "MODEX_PASSWORD": "journey password"}
            args = ("--hosted", "--no-demo", "--chain", anvil.url, "--ipfs", daemon.api_url)
            with modex_up(data, *args, env=env) as (url, log_path):
                config = load_config(
                    None,
                    env={},
                    data_dir=root / "validator",
                    chain=anvil.url,
                    ipfs=daemon.api_url,
                    deployment_file=record,
                )
                yield url, anvil.url, config
                assert "Traceback" not in log_path.read_text()
        finally:
            daemon.stop()


def signed_in(browser, url: str, rpc_url: str, sent: list[str]):
    """A new person: a wallet with 1 test ETH, a page of its own that signed in with it (SIWE)
    and connected; every request its pages send is added to ``sent``."""
    wallet = Wallet(rpc_url)
    wallet._rpc("anvil_setBalance", [wallet.account.address, hex(10**18)])
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.expose_function("pyEthereum", wallet.request)
    context.add_init_script(STAND_INS)  # the wallet, and a folder picker headless Chromium lacks
    context.on("request", lambda r: sent.append(f"{r.url} {r.headers} {r.post_data or ''}"))
    page = context.new_page()
    page.dialogs = []  # the pages say everything in their status lines: an alert() is a failure
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.goto(f"{url}/wallet/")
    page.click("#eip1193-connect")
    page.wait_for_selector("#eip1193-enc")
    assert wallet.account.address in page.inner_text("#address")
    return wallet, page


def shows(page, selector: str, text: str, timeout: float = 120.0) -> str:
    """Reload until ``selector`` shows ``text`` (what the indexer has not caught up with yet)."""
    deadline = time.monotonic() + timeout
    while text not in (said := page.locator(selector).inner_text()):
        assert time.monotonic() < deadline, f"{text!r} never in {selector} on {page.url}: {said!r}"
        page.wait_for_timeout(500)
        page.reload()
    return said


def publish_from_the_wallet(page, url: str) -> int:
    page.goto(f"{url}/publish/")
    page.select_option("select[name=model_dir]", label=DEMO_MODEL)
    page.fill("input[name=name]", NAME)
    page.select_option("select[name=task]", "text-classification")
    page.fill("input[name=price]", "0.01")
    page.click("#publish-button")
    page.wait_for_selector("#publish-sign", timeout=180_000)  # sealed and pinned: now sign
    page.click("#publish-sign")  # list, claimMetrics, setOperator
    page.wait_for_url("**/models/*", timeout=120_000)
    assert NAME in page.inner_text("h1")
    assert "claimed" in page.inner_text("#claimed-digest")
    return int(page.url.rsplit("/", 1)[1])


def buy(page, url: str, model_id: int) -> None:
    page.click("#eip1193-enc")  # the X25519 key, derived in the page from a personal_sign
    page.wait_for_selector("#eip1193-status:has-text('Encryption key ready')")
    page.goto(f"{url}/models/{model_id}")
    page.wait_for_load_state("load")  # modex.js has wired the form
    page.press("input[name=max_price]", "Enter")  # Enter buys through the wallet, as its button
    # The page reloads itself when the key is delivered; the module then enables the button.
    page.wait_for_selector("#browser-download-button:not([disabled])", timeout=120_000)


def content_key(chain: Chain, buyer: Wallet, model_id: int) -> tuple[bytes, bytes]:
    """The key the buyer's page unwraps (from the chain, with the wallet's encryption signature),
    and the buyer's X25519 public key, which anyone reads from its Purchased event."""
    signature = bytes.fromhex(buyer.personal_signatures[0])  # the encryption message's
    secret, public = keywrap.x25519_from_signature(signature)
    purchase_id, wrapped = find_delivery(chain, buyer.account.address, model_id)
    terms = {"chain_id": chain.chain_id, "marketplace": chain.marketplace.address}
    return keywrap.unwrap_key(wrapped, secret, **terms, purchase_id=purchase_id), public


def a_lying_node_is_refused(page, url: str, model_id: int, public: bytes, other: Path) -> None:
    """The node answers another model: its hash, the key it sealed it with wrapped to the
    buyer's public key for this very purchase, and its archive. The page reads the chain."""
    manifest, tar = model_tar(make_model(other, size=5000))

    def lies(route):
        facts = route.fetch().json()
        wrapped = keywrap.wrap_key(
            public,
            KEY,
            chain_id=facts["chain_id"],
            marketplace=facts["marketplace"],
            purchase_id=facts["purchase_id"],
        )
        facts |= {"model_hash": manifest.model_hash_hex, "wrapped_key": "0x" + wrapped.hex()}
        route.fulfill(json=facts)

    page.route(f"{url}/api/models/{model_id}/download", lies)
    page.route(f"{url}/api/models/{model_id}/sealed", lambda r: r.fulfill(body=sealed_tar(tar)))
    page.click("#browser-download-button")
    page.wait_for_selector("#browser-download-status:has-text('Refused')", timeout=60_000)
    assert "is not the chain's" in page.inner_text("#browser-download-status")
    assert page.evaluate(PICKED_FILES) == {}
    page.unroute(f"{url}/api/models/{model_id}/download")
    page.unroute(f"{url}/api/models/{model_id}/sealed")


def sealed_head(page, url: str, model_id: int, size: int) -> bytes:
    """The first ``size`` bytes of the sealed archive the node serves the page's session."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    head = b""
    with httpx.stream("GET", f"{url}/api/models/{model_id}/sealed", cookies=cookies) as r:
        for block in r.iter_bytes():
            head += block
            if len(head) >= size:
                return head[:size]
    raise AssertionError(f"the sealed archive is shorter than {size} bytes")


def download_try_and_vote(page, url: str, model_id: int) -> None:
    # A tampered archive (a flipped byte in its first chunk) is refused, and nothing is kept.
    head = sealed_head(page, url, model_id, 24 + 2 * (seal.DEFAULT_CHUNK_SIZE + seal.TAG_SIZE))
    tampered = head[:200] + bytes([head[200] ^ 1]) + head[201:]
    page.route(f"{url}/api/models/{model_id}/sealed", lambda r: r.fulfill(body=tampered))
    page.click("#browser-download-button")
    page.wait_for_selector("#browser-download-status:has-text('fails authentication')")
    said = page.inner_text("#browser-download-status")
    assert "fails authentication at chunk 0" in said and said.endswith("Nothing was kept.")
    assert page.evaluate(PICKED_FILES) == {}
    page.unroute(f"{url}/api/models/{model_id}/sealed")
    page.click("#browser-download-button")
    page.wait_for_selector(
        "#browser-download-status:has-text('Downloaded and verified')", timeout=180_000
    )
    shot(page, "60-hosted-journey-downloaded")

    page.fill("#try textarea", "I absolutely love this phone, it works great")
    page.click("#eip1193-try")
    page.wait_for_selector("#try-result:has-text('→')", timeout=180_000)  # the model may load
    assert re.search(r"\((0|1)\.\d\d\)", page.inner_text("#try-result"))

    page.select_option("select[name=score]", "5")
    page.click("#eip1193-vote")
    page.wait_for_selector("#eip1193-status:has-text('Your vote (5★) is recorded')")
    shows(page, "#score", "5.0 from 1 vote")
    shot(page, "61-hosted-journey-voted")


def stake_and_name_an_attester(page, url: str, hot: str) -> None:
    page.goto(f"{url}/validate/")
    page.wait_for_load_state("load")
    page.press("input[name=amount]", "Enter")  # the form holds the minimum stake
    page.wait_for_selector("#eip1193-status:has-text('Staked')", timeout=60_000)
    page.fill("input[name=attester]", hot)
    page.click("#eip1193-attester")
    page.wait_for_selector(f"#attester-now:has-text('{hot}')", timeout=60_000)


def attest_until_settled(agent: ValidatorAgent, model_id: int) -> None:
    """Poll the agent (the node's worker delivers it the key), moving anvil's clock past each
    deadline it waits for, until it is done with the model."""
    deadline = time.monotonic() + 300
    while model_id not in (report := agent.poll({model_id})).done:
        assert time.monotonic() < deadline, report.about(model_id, agent.now())
        wait = report.waiting.get(model_id)
        if wait is not None and wait.until:
            time_travel(agent.chain, max(1, wait.until - agent.now() + 1))
        else:
            time.sleep(0.5)  # the key request: the node's worker answers it in its next pass


def test_every_role_from_a_browser_wallet_on_a_hosted_exchange(
    hosted,
    chromium,  # noqa: F811
    trained_model,
    tmp_path,
):
    url, rpc_url, config = hosted
    chain = Chain.from_config(config)
    sent: list[str] = []

    seller, page = signed_in(chromium, url, rpc_url, sent)
    model_id = publish_from_the_wallet(page, url)
    shot(page, "59-hosted-journey-published")
    assert not page.dialogs, page.dialogs

    buyer, page = signed_in(chromium, url, rpc_url, sent)
    buy(page, url, model_id)
    key, public = content_key(chain, buyer, model_id)
    a_lying_node_is_refused(page, url, model_id, public, tmp_path / "another model")
    download_try_and_vote(page, url, model_id)
    assert not page.dialogs, page.dialogs
    kept = page.evaluate(PICKED_FILES)
    folder = f"{NAME}-model-{model_id}/"
    assert kept == {folder: "folder"} | {  # the model's files, verified and kept
        folder + path: hashlib.sha256(data).hexdigest()
        for path, data in model_files(trained_model).items()
    }

    validator, page = signed_in(chromium, url, rpc_url, sent)
    hot_key = Account.create()
    hot = LocalSigner(hot_key)
    validator._rpc("anvil_setBalance", [hot.address, hex(10**18)])  # its gas
    stake_and_name_an_attester(page, url, hot.address)
    stack = Stack(config)
    try:
        agent = ValidatorAgent.from_config(
            config,
            stack.chain,
            hot,
            stack.store,
            evaluator=ml_evaluator,
            validator=validator.account.address,
        )
        attest_until_settled(agent, model_id)
    finally:
        stack.close()
    page.goto(f"{url}/models/{model_id}")
    shows(page, "#validation-status", "Verified")
    shot(page, "62-hosted-journey-verified")
    assert not page.dialogs, page.dialogs

    # -- nothing the pages sent carries a private key, the encryption seed or a content key --
    signature = buyer.personal_signatures[0]
    assert set(buyer.personal_signatures) == {signature}  # the encryption message's, each time
    secrets = [w.account.key.hex().removeprefix("0x") for w in (seller, buyer, validator)]
    secrets += [bytes(hot_key.key).hex(), signature, key.hex()]
    assert any(f"/api/models/{model_id}/sealed" in r for r in sent)
    leaked = [(s[:8], r[:200]) for r in sent for s in secrets if s.lower() in r.lower()]
    assert not leaked, leaked
