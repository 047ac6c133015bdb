"""The in-browser download (app/static/js/, bundled by tools/setup.sh into app/static/build/) in
headless Chromium.

First the bundle's format code against the Python reference (node/content/), in a blank page
served by Playwright on http://localhost (a secure context, so WebCrypto is there): the X25519
key from a wallet signature, the HPKE unwrap of a key node/content wrapped, an archive sealed by
node/content opened to the same files and model hash, and every refusal of docs/formats.md §3.

Then the journey on a real stack (anvil, the embedded store, the UI served by waitress, the
followers delivering keys): a browser-wallet buyer (an EIP-1193 provider injected in the page,
signing with an eth-account key in the test) buys, receives the key, and downloads and verifies
in the page; a tampered and a truncated archive are refused and leave nothing; the verified files
equal the model's; no request of the page carries the content key or the wallet's signature.
The folder picker is the one stand-in: headless Chromium has no native dialog, so
showDirectoryPicker answers with a folder of the origin's private file system, which takes the
same writes through the same File System Access API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from modex.commands import up
from modex.exchange import Exchange
from node import paths
from node.config import load_config
from node.content import keywrap, seal, tarball
from node.content.manifest import build_manifest
from node.devchain import free_port, start_anvil
from node.fetch import find_delivery
from node.publish import ListingInfo, publish
from node.signer import LocalSigner
from tests.app.conftest import VAULT_PASSWORD
from tests.app.test_browser import CHROMIUM_ARGS, SHOTS, shot, wallet_rpc

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

BUNDLE = paths.ROOT / "app" / "static" / "build" / "download.js"
ORIGIN = "http://localhost"
KEY = bytes(range(32))


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright  # heavy: only the browser tests load it

    assert BUNDLE.is_file(), f"{BUNDLE} is missing: run `bash tools/setup.sh` (it builds it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def bundle_page(chromium):
    """A blank page on http://localhost with the bundle imported as window.m."""
    page = chromium.new_page()
    page.route(f"{ORIGIN}/", lambda r: r.fulfill(body="<!doctype html><title>t</title>"))
    page.route(
        f"{ORIGIN}/download.js",
        lambda r: r.fulfill(body=BUNDLE.read_bytes(), content_type="text/javascript"),
    )
    page.goto(f"{ORIGIN}/")
    page.evaluate("async () => { window.m = await import('/download.js'); }")
    page.evaluate(OPEN_IN_PAGE)
    yield page
    page.close()


# Opens base64 sealed bytes in the page, handed over in pieces of odd sizes (as a network stream
# would), into memory; answers {files: {path: base64}, manifest, hash} or {refused: sentence}.
OPEN_IN_PAGE = """() => {
window.openSealed = async ({sealed, key, expected}) => {
  const bytes = Uint8Array.from(atob(sealed), (c) => c.charCodeAt(0));
  async function* pieces() { for (let i = 0, n = 1; i < bytes.length; i += n, n = n * 7 % 5003 + 1) yield bytes.slice(i, i + n); }
  const written = {};
  const open = async (path) => { written[path] = []; return { write: async (b) => { written[path].push(...b); } }; };
  const keyBytes = Uint8Array.from(key.match(/../g), (h) => parseInt(h, 16));
  try {
    const files = await window.m.openModel(pieces(), keyBytes, expected, open);
    const out = {};
    for (const [p, b] of Object.entries(written)) out[p] = btoa(String.fromCharCode(...b));
    return { files: out, manifest: files, hash: window.m.modelHash(files) };
  } catch (e) {
    if (!(e instanceof window.m.Refused)) throw e;
    return { refused: e.message };
  }
};
}"""


def open_in_page(page, sealed: bytes, expected: str, key: bytes = KEY) -> dict:
    return page.evaluate(
        "args => window.openSealed(args)",
        {"sealed": base64.b64encode(sealed).decode(), "key": key.hex(), "expected": expected},
    )


def model_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make_model(root: Path, size: int = 20_000) -> Path:
    """Files that take every path of the tar: nested, non-ASCII, longer than 100 bytes (pax),
    empty, and one over several sealed chunks."""
    files = {
        "config.json": b'{"model_type": "bert"}',
        "weights/model.safetensors": os.urandom(size),
        "tokenizer/vocabulaire-été.txt": "a\nb\nç\n".encode(),
        "d/" + "long-name-" * 12 + ".txt": b"x" * 513,
        "empty.txt": b"",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def sealed_tar(tar: bytes, chunk_size: int = 4096) -> bytes:
    out = io.BytesIO()
    seal.seal_stream(KEY, io.BytesIO(tar), out, chunk_size=chunk_size)
    return out.getvalue()


def model_tar(model_dir: Path):
    manifest = build_manifest(model_dir)
    out = io.BytesIO()
    tarball.write_tar(model_dir, manifest, out)
    return manifest, out.getvalue()


def test_the_wallet_key_and_the_unwrap_match_python(bundle_page):
    wallet = Account.create()
    message = keywrap.encryption_message(31337, wallet.address)
    signature = bytes(wallet.sign_message(encode_defunct(text=message)).signature)
    secret, public = keywrap.x25519_from_signature(signature)
    terms = {"chain_id": 31337, "marketplace": "0x" + "ab" * 20, "purchase_id": 7}
    wrapped = keywrap.wrap_key(public, KEY, **terms)
    got = bundle_page.evaluate(
        """async ({signature, wrapped, terms}) => {
          const {secret, publicKey} = window.m.x25519FromSignature(signature);
          const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
          const unwrap = (t) => window.m.unwrapContentKey(wrapped, secret, t).then(hex, (e) => e.message);
          return {secret: hex(secret), publicKey: hex(publicKey), key: await unwrap(terms),
                  otherPurchase: await unwrap({...terms, purchaseId: terms.purchaseId + 1}),
                  otherChain: await unwrap({...terms, chainId: 1})};
        }""",
        {
            "signature": "0x" + signature.hex(),
            "wrapped": "0x" + wrapped.hex(),
            "terms": {"chainId": 31337, "marketplace": terms["marketplace"], "purchaseId": 7},
        },
    )
    assert (got["secret"], got["publicKey"], got["key"]) == (secret.hex(), public.hex(), KEY.hex())
    for refused in (got["otherPurchase"], got["otherChain"]):
        assert refused.startswith("Cannot unwrap the content key: it was wrapped to another")


def test_an_archive_sealed_by_python_opens_to_the_same_files_and_model_hash(bundle_page, tmp_path):
    model_dir = make_model(tmp_path / "model")
    manifest, tar = model_tar(model_dir)
    got = open_in_page(bundle_page, sealed_tar(tar), manifest.model_hash_hex)
    assert "refused" not in got, got
    assert got["hash"] == manifest.model_hash_hex
    assert sorted(got["manifest"], key=lambda f: f["path"].encode()) == list(manifest.files)
    files = {p: base64.b64decode(b) for p, b in got["files"].items()}
    assert files == model_files(model_dir)


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return out.getvalue()


def member(name: str, kind=tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def bad_checksum(tar: bytes) -> bytes:
    raw = bytearray(tar)
    raw[0] ^= 1  # the name's first byte: the header no longer sums to its checksum
    return bytes(raw)


TAR_REFUSALS = {
    "symlink": (tar_of((member("a", tarfile.SYMTYPE, "/etc/passwd"), b"")), "is a symlink"),
    "hard link": (tar_of((member("a", tarfile.LNKTYPE, "b"), b"")), "is a hard link"),
    "FIFO": (tar_of((member("a", tarfile.FIFOTYPE), b"")), "is a FIFO"),
    "absolute": (tar_of((member("/etc/x"), b"1")), "empty, absolute or with NUL"),
    "dot-dot": (tar_of((member("a/../../x"), b"1")), "'..' component"),
    "duplicate": (tar_of((member("a"), b"1"), (member("a"), b"2")), 'names "a" twice'),
    "file and folder": (tar_of((member("a"), b"1"), (member("a/b"), b"2")), 'names "a/b" twice'),
    "bad checksum": (bad_checksum(tar_of((member("a"), b"1"))), "checksum mismatch"),
    "data after the end": (tar_of((member("a"), b"1")) + b"\1" * 512, "Data after the end"),
    "no end": (tar_of((member("a"), b"1"))[:1024], "no end-of-archive"),
}


@pytest.mark.parametrize("case", TAR_REFUSALS)
def test_a_tar_the_format_forbids_is_refused(bundle_page, case):
    tar, says = TAR_REFUSALS[case]
    got = open_in_page(bundle_page, sealed_tar(tar), "0x" + "00" * 32)
    assert says in got.get("refused", ""), got


def test_every_damage_to_the_sealed_archive_is_refused(bundle_page, tmp_path):
    manifest, tar = model_tar(make_model(tmp_path / "model"))
    good = sealed_tar(tar)
    record = 4096 + seal.TAG_SIZE
    assert len(good) > 24 + 3 * record  # several chunks
    flipped = bytearray(good)
    flipped[24 + record + 100] ^= 0x40
    header = bytearray(good)
    header[20] = 1
    cases = {
        "a flipped byte in chunk 1": (bytes(flipped), "fails authentication at chunk 1"),
        "the final chunk dropped": (
            good[: len(good) - (len(good) - 24) % record],
            "fails authentication",
        ),
        "cut inside a chunk": (good[:-100], "fails authentication"),
        "bytes after the final chunk": (good + b"\0" * 17, "fails authentication"),
        "cut inside the header": (good[:20], "ends inside its 24-byte header"),
        "another magic": (b"MDXSEAL2" + good[8:], "bad magic"),
        "reserved bytes set": (bytes(header), "non-zero reserved bytes"),
        "another key's archive": (good, "fails authentication at chunk 0"),
    }
    for case, (sealed, says) in cases.items():
        key = bytes(32) if case == "another key's archive" else KEY
        got = open_in_page(bundle_page, sealed, manifest.model_hash_hex, key)
        assert says in got.get("refused", ""), (case, got)
    other = "0x" + hashlib.sha256(b"another model").hexdigest()
    got = open_in_page(bundle_page, good, other)
    assert "is not the on-chain model hash" in got["refused"]


# ---- the journey on a real stack ----------------------------------------------------------------

# The stand-ins injected before the page's scripts: an EIP-1193 wallet whose requests the test
# answers (window.pyEthereum, exposed by Playwright), and a folder picker that answers with a
# folder of the origin's private file system (headless Chromium shows no native dialog).
STAND_INS = """
window.ethereum = {
  request: ({method, params}) =>
    window.pyEthereum(method, JSON.stringify(params || [])).then((r) => {
      const reply = JSON.parse(r);  // {rejected: true}: the person clicked Reject (EIP-1193 4001)
      if (reply && reply.rejected) throw Object.assign(new Error("User rejected the request."), {code: 4001});
      return reply;
    }),
};
window.showDirectoryPicker = async () =>
  (await navigator.storage.getDirectory()).getDirectoryHandle("picked", {create: true});
"""

# What the picked folder holds: {path: sha256 hex, folder path + "/": "folder"} (read back
# through the same API).
PICKED_FILES = """
async () => {
  const picked = await (await navigator.storage.getDirectory()).getDirectoryHandle("picked", {create: true});
  const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
  const out = {};
  async function walk(dir, prefix) {
    for await (const [name, handle] of dir.entries()) {
      if (handle.kind === "directory") { out[prefix + name + "/"] = "folder"; await walk(handle, prefix + name + "/"); }
      else out[prefix + name] = hex(await crypto.subtle.digest("SHA-256", await (await handle.getFile()).arrayBuffer()));
    }
  }
  await walk(picked, "");
  return out;
}
"""


class Wallet:
    """An EIP-1193 wallet for the page: an eth-account key here, transactions sent to anvil."""

    def __init__(self, rpc_url: str):
        self.account = Account.create()
        self.address = self.account.address
        self.rpc_url = rpc_url
        self.rejects = False  # True: the person clicks Reject on what the page asks to sign

    def call(self, method: str, params: list):
        body = wallet_rpc(self.rpc_url, method, params)
        assert "error" not in body, body
        return body["result"]

    def sign_text(self, text: str) -> str:
        return "0x" + bytes(self.account.sign_message(encode_defunct(text=text)).signature).hex()

    def request(self, method: str, params_json: str) -> str:
        params = json.loads(params_json)
        if method in ("eth_requestAccounts", "eth_accounts"):
            return json.dumps([self.address])
        if method in ("eth_chainId", "eth_call", "eth_getLogs"):  # read from the wallet's node
            return json.dumps(self.call(method, params))
        if method == "personal_sign":
            return json.dumps({"rejected": True} if self.rejects else self.sign_text(params[0]))
        if method == "eth_sendTransaction":
            tx = {
                k: (v if k in ("to", "data") else int(v, 16))
                for k, v in params[0].items()
                if k != "from"
            }
            raw = bytes(self.account.sign_transaction(tx).raw_transaction)
            return json.dumps(self.call("eth_sendRawTransaction", ["0x" + raw.hex()]))
        raise AssertionError(f"unexpected wallet call {method}")


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """anvil, an exchange on it (embedded store, followers delivering keys) and its UI served by
    waitress on a free port; yields (UI url, anvil url, exchange)."""
    from waitress import create_server

    from app.resources import close_resources

    data = tmp_path_factory.mktemp("download-node")
    with start_anvil() as anvil:
        config = load_config(
            None,
            env={},
            data_dir=data,
            chain=anvil.url,
            ipfs="embedded",
            gateway_port=0,
            deployment_file=data / "deployments" / "31337.json",
        )
        exchange = Exchange.start(config, password=VAULT_PASSWORD)
        app = up.create_ui(exchange, demo=False)
        server = create_server(app, host="127.0.0.1", port=free_port(), threads=4)
        threading.Thread(target=server.run, name="ui", daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.effective_port}", anvil.url, exchange
        finally:
            server.close()
            close_resources(app)
            exchange.stop()


def refused_and_nothing_kept(page, url: str, model_id: int, damage) -> str:
    """Serve the sealed archive damaged by ``damage``; click; the page's sentence."""

    def damaged(route):
        response = route.fetch()
        route.fulfill(response=response, body=damage(response.body()))

    page.route(f"{url}/api/models/{model_id}/sealed", damaged)
    page.click("#browser-download-button")
    page.wait_for_selector("#browser-download-status:has-text('Refused')", timeout=60_000)
    page.unroute(f"{url}/api/models/{model_id}/sealed")
    assert page.evaluate(PICKED_FILES) == {}
    return page.inner_text("#browser-download-status")


@pytest.mark.anvil
@pytest.mark.slow
def test_a_browser_wallet_buyer_downloads_and_verifies_in_the_page(chromium, running, tmp_path):
    url, rpc_url, exchange = running
    seller = LocalSigner(Account.create())
    wallet_rpc(rpc_url, "anvil_setBalance", [seller.address, hex(10**18)])
    model_dir = make_model(tmp_path / "model", size=(5 << 20) // 2)  # three 1 MiB chunks
    model_id = publish(
        exchange.chain,
        seller,
        exchange.store,
        exchange.vault,
        model_dir,
        ListingInfo(name="Tiny été", description="d", task="other", license="mit"),
        price_wei=10**16,
        operator=exchange.operator.address,
    ).model_id

    wallet = Wallet(rpc_url)
    wallet.call("anvil_setBalance", [wallet.address, hex(10**18)])
    context = chromium.new_context()
    context.expose_function("pyEthereum", wallet.request)
    context.add_init_script(STAND_INS)
    sent = []  # every request of the page: url, headers, body
    context.on("request", lambda r: sent.append(f"{r.url} {r.headers} {r.post_data or ''}"))
    page = context.new_page()
    page.goto(f"{url}/wallet/")
    page.click("#eip1193-connect")
    page.wait_for_selector("#eip1193-enc")
    page.click("#eip1193-enc")
    page.wait_for_selector("#eip1193-status:has-text('Encryption key ready')")
    for route in ("download", "sealed"):  # not bought yet: nothing to download
        before = page.request.get(f"{url}/api/models/{model_id}/{route}")
        assert before.status == 400 and "no delivered key" in before.text()

    deadline = time.monotonic() + 60
    page.goto(f"{url}/models/{model_id}")
    while not page.locator("#eip1193-buy").count():  # the indexer lists it in a moment
        assert time.monotonic() < deadline, page.inner_text("body")[:2000]
        page.wait_for_timeout(500)
        page.reload()
    page.click("#eip1193-buy")
    # the page reloads itself when the key is delivered; the module then enables the button
    page.wait_for_selector("#browser-download-button:not([disabled])", timeout=120_000)
    facts = page.request.get(f"{url}/api/models/{model_id}/download").json()
    sealed = page.request.get(f"{url}{facts['sealed_url']}").body()
    assert facts["sealed_size"] == len(sealed) > 2 * (seal.DEFAULT_CHUNK_SIZE + seal.TAG_SIZE)
    assert (
        facts["model_hash"]
        == "0x" + exchange.chain.registry.functions.modelHash(model_id).call().hex()
    )

    said = refused_and_nothing_kept(  # a flipped byte in the last chunk: files were begun
        page, url, model_id, lambda b: b[:-50] + bytes([b[-50] ^ 1]) + b[-49:]
    )
    assert "fails authentication at chunk 2" in said and said.endswith("Nothing was kept.")
    record = seal.DEFAULT_CHUNK_SIZE + seal.TAG_SIZE
    said = refused_and_nothing_kept(page, url, model_id, lambda b: b[: 24 + 2 * record])
    assert "fails authentication at chunk 1" in said  # its final chunk is gone
    said = refused_and_nothing_kept(page, url, model_id, lambda b: b[:-1000])
    assert "fails authentication at chunk 2" in said

    page.click("#browser-download-button")
    page.wait_for_selector(
        "#browser-download-status:has-text('Downloaded and verified')", timeout=60_000
    )
    assert "5 files" in page.inner_text("#browser-download-status")
    assert page.eval_on_selector("#browser-download-progress", "p => p.value") == 100
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot(page, "40-browser-download-verified")
    folder = f"Tiny été-model-{model_id}/"
    kept = {folder: "folder"} | {folder + f"{d}/": "folder" for d in ("d", "tokenizer", "weights")}
    kept |= {
        folder + path: hashlib.sha256(data).hexdigest()
        for path, data in model_files(model_dir).items()
    }
    assert page.evaluate(PICKED_FILES) == kept

    wallet.rejects = True  # the buyer rejects the signature: nothing is downloaded
    page.click("#browser-download-button")
    page.wait_for_selector("#browser-download-status:has-text('You rejected the signature')")
    wallet.rejects = False
    page.evaluate("() => { window.showDirectoryPicker = undefined; }")  # as in Firefox, Safari
    page.click("#browser-download-button")
    page.wait_for_selector("#browser-download-status:has-text('no File System Access API')")
    assert page.evaluate(PICKED_FILES) == kept  # neither touched the picked folder

    signature = wallet.sign_text(
        keywrap.encryption_message(exchange.chain.chain_id, wallet.address)
    )
    purchase_id, wrapped = find_delivery(exchange.chain, wallet.address, model_id)
    content_key = keywrap.unwrap_key(
        wrapped,
        keywrap.x25519_from_signature(bytes.fromhex(signature[2:]))[0],
        chain_id=exchange.chain.chain_id,
        marketplace=exchange.chain.marketplace.address,
        purchase_id=purchase_id,
    )
    assert any(f"/api/models/{model_id}/sealed" in r for r in sent)
    secrets = (content_key.hex(), signature[2:], base64.b64encode(content_key).decode())
    leaked = [r for r in sent for s in secrets if s.lower() in r.lower()]
    assert not leaked, leaked
    context.close()
