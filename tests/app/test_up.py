"""`modex up` as a process: SIGTERM stops it as Ctrl-C does; a --port outside 0..65535 is a usage
error; a taken default port is replaced by a free one (said), a taken port one chose is refused
naming its option. Then against real services chosen by configuration: anvil + the IPFS daemon
(js-ipfs speaking the Kubo RPC API), both started here on 127.0.0.1 and stopped by PID; and, on
that stack, the browser-wallet path (EIP-1193) in headless Chromium: a stand-in for MetaMask is
injected as `window.ethereum`; it signs with an eth-account key in the test and sends to anvil,
as MetaMask would send to its own RPC node."""

from __future__ import annotations

import errno
import json
import re
import signal
import socket
import time

import httpx
import psutil
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from modex.cli import main
from node.devchain import start_anvil
from node.ipfsdaemon import start_ipfs_daemon
from tests.app.conftest import modex_up, modex_up_process
from tests.app.test_browser import CHROMIUM_ARGS, SHOTS, shot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_sigterm_stops_modex_up_as_ctrl_c_does(tmp_path):
    """`kill PID` (a supervisor, the tests) used to end the process at once (exit -15): no
    "stopping…", the worker and indexer threads, the gateway and the UI server never closed."""
    data = tmp_path / "node"
    with modex_up_process(data) as (proc, url, log_path):
        assert httpx.get(f"{url}/api/health", timeout=30).status_code == 200
        banner = log_path.read_text().split("Modex is up at")[1].split("\n")[0]
        gateway = re.search(r"gateway (http://127\.0\.0\.1:\d+)", banner).group(1)
        httpx.get(f"{gateway}/ipfs/bafkqaaa", timeout=30)  # listening (it answers, 400 here)
        started = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-4000:]
    text = log_path.read_text()
    after = text.split("Press Ctrl-C to stop.")[1]
    assert "stopping…" in after
    assert re.search(
        r"stopped: modex-indexer, modex-worker, modex-claimer, the store, the gateway", after
    ), after
    assert "did not stop" not in after and "Traceback" not in after, after
    assert psutil.wait_procs(started, timeout=10)[1] == []  # any child it had is gone too
    for address in (url, gateway):  # nothing listens on its ports any more
        with pytest.raises(httpx.ConnectError):
            httpx.get(address, timeout=5)
    assert not [p for p in data.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("port", ["70000", "-1", "5x"])
def test_modex_up_port_out_of_range_is_a_usage_error(tmp_path, port, capsys):
    """Werkzeug binds --port 70000 as 4464 (70000 mod 65536); refused before anything starts."""
    with pytest.raises(SystemExit) as info:
        main(["up", "--port", port, "--data-dir", str(tmp_path / "node"), "--no-demo"])
    assert info.value.code == 2
    assert f"argument --port: {port!r} is not a TCP port 0..65535" in capsys.readouterr().err
    assert not (tmp_path / "node").exists()


def hold(port: int) -> socket.socket | None:
    """Listen on 127.0.0.1:``port`` as another program would; None when one already does."""
    try:
        return socket.create_server(("127.0.0.1", port))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        return None


def test_a_taken_default_gateway_port_is_replaced_by_a_free_one(tmp_path):
    """It was werkzeug's "Port 8080 is in use ... start the server with a different port" and
    exit 1, with no option to do so."""
    held = hold(8080)
    try:
        env = {"MODEX_GATEWAY_PORT": "", "MODEX_PASSWORD": "a password for this test"}
        with modex_up_process(tmp_path / "node", "--no-demo", env=env) as (_, url, log_path):
            text = log_path.read_text()
            said = re.search(
                r"^Port 8080 is taken by another program: the IPFS gateway listens "
                r"on port (\d+) instead \(--gateway-port N chooses the port\)\.$",
                text,
                re.MULTILINE,
            )
            assert said, text[-3000:]
            gateway = f"http://127.0.0.1:{said.group(1)}"
            assert f"gateway {gateway})" in text.split("Modex is up at")[1].split("\n")[0]
            assert httpx.get(f"{gateway}/ipfs/bafkqaaa", timeout=30).status_code < 500
            assert httpx.get(f"{url}/api/health", timeout=30).status_code == 200
    finally:
        if held is not None:
            held.close()


@pytest.mark.parametrize(
    "option, what", [("--port", "the web UI"), ("--gateway-port", "the IPFS gateway")]
)
def test_a_chosen_port_that_is_taken_is_refused_naming_its_option(tmp_path, capsys, option, what):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        code = main(["up", option, str(port), "--data-dir", str(tmp_path / "node"), "--no-demo"])
    assert code == 1
    err = capsys.readouterr().err
    assert err == (
        f"modex: error: port {port} for {what} ({option}) is taken by another "
        f"program: choose another with {option} N (0 = any free port)\n"
    )
    assert not (tmp_path / "node").exists()  # nothing started: no chain, no data folder
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before


@pytest.mark.anvil
@pytest.mark.kubo
def test_modex_up_on_anvil_and_the_ipfs_daemon(tmp_path):
    with start_anvil() as anvil:
        daemon = start_ipfs_daemon()
        try:
            # The deployment record goes to the test's folder, not the shared deployments/.
            record = tmp_path / "deployments" / "31337.json"
            with modex_up(
                tmp_path / "node",
                "--chain",
                anvil.url,
                "--ipfs",
                daemon.api_url,
                env={"MODEX_DEPLOYMENT_FILE": str(record)},
            ) as (url, log_path):
                health = httpx.get(f"{url}/api/health", timeout=30).json()
                assert health["chain_id"] == 31337 and health["endpoint"] == anvil.url
                page = httpx.get(url, timeout=30).text
                for _ in range(60):  # the indexer follows the chain in its own thread
                    if "Demo sentiment classifier (MiniLM)" in page:
                        break
                    page = httpx.get(url, timeout=30).text
                assert "Demo sentiment classifier (MiniLM)" in page and "0.1 ETH" in page
                listing = httpx.get(f"{url}/api/models?sort=price", timeout=30).json()["models"][0]
                # The listing's metadata JSON is pinned on the daemon, not in an embedded store.
                cat = httpx.post(
                    f"{daemon.api_url}/api/v0/cat",
                    params={"arg": listing["metadata_cid"]},
                    timeout=30,
                )
                assert cat.status_code == 200 and b'"name"' in cat.content
                assert (
                    "gateway" not in log_path.read_text().split("Modex is up at")[1].split("\n")[0]
                )
                browser_wallet_buys(url, anvil.url, log_path)
            assert record.is_file()
        finally:
            daemon.stop()


INJECTED_PROVIDER = """
window.ethereum = {
  isModexTestWallet: true,
  request: ({method, params}) =>
    window.pyEthereum(method, JSON.stringify(params || [])).then((r) => JSON.parse(r)),
};
"""


def browser_wallet_buys(url: str, rpc_url: str, log_path) -> None:
    """Connect the injected wallet, derive the encryption key (personal_sign), buy with it
    (server-prepared eth_sendTransaction), and watch the key arrive."""
    from playwright.sync_api import sync_playwright  # heavy: only this browser test loads it

    wallet = Account.create()
    rpc = httpx.Client(base_url=rpc_url, timeout=30)

    def call(method, params):
        reply = rpc.post("", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        body = reply.json()
        assert "error" not in body, body
        return body["result"]

    call("anvil_setBalance", [wallet.address, hex(10**18)])

    def provider(method: str, params_json: str) -> str:
        params = json.loads(params_json)
        if method in ("eth_requestAccounts", "eth_accounts"):
            return json.dumps([wallet.address])
        if method == "personal_sign":
            signed = wallet.sign_message(encode_defunct(text=params[0]))
            return json.dumps("0x" + bytes(signed.signature).hex())
        if method == "eth_sendTransaction":
            tx = {
                k: (int(v, 16) if k not in ("from", "to", "data") else v)
                for k, v in params[0].items()
                if k != "from"
            }
            raw = wallet.sign_transaction(tx).raw_transaction
            return json.dumps(call("eth_sendRawTransaction", ["0x" + bytes(raw).hex()]))
        raise AssertionError(f"unexpected wallet call {method}")

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            dialogs = []  # the page reports wallet errors with alert(): keep them for the assert
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.expose_function("pyEthereum", provider)
            page.add_init_script(INJECTED_PROVIDER)
            page.goto(f"{url}/wallet/")
            page.click("#eip1193-connect")
            page.wait_for_selector("#eip1193-enc")
            assert wallet.address in page.inner_text("#address")
            page.click("#eip1193-enc")
            # a selector, not a JS predicate: the page's CSP (no unsafe-eval) refuses the latter
            page.wait_for_selector("#eip1193-status:has-text('Encryption key ready')")
            shot(page, "20-browser-wallet")
            page.goto(url)
            page.click("text=Demo sentiment classifier (MiniLM)")
            page.click("[data-eip1193-buy]")
            deadline = time.monotonic() + 180
            while "Key delivered" not in page.inner_text("body"):
                assert not dialogs, dialogs
                assert time.monotonic() < deadline, (
                    page.inner_text("body")[:2000],
                    log_path.read_text()[-3000:],
                )
                time.sleep(1)
                page.reload()
            shot(page, "21-browser-wallet-delivered")
        finally:
            browser.close()
