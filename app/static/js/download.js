// "Download and verify in this browser" on the model page, for a browser-wallet (EIP-1193) buyer
// whose key was delivered. In this page, and nowhere else: the wallet signs the encryption
// message (personal_sign), the X25519 secret is derived from that signature, the content key is
// unwrapped (HPKE), the sealed archive is fetched from this node, decrypted chunk by chunk,
// unpacked and every file hashed; the files go to a new folder inside the one the person picks
// (File System Access API), written through swap files that become the files only once the
// model hash matches the chain's. Anything refused removes that folder: nothing is kept.
// No request carries the signature or the content key (tests/app/test_browser_download.py).
// The node is not trusted for what the files are checked against: the on-chain model hash, the
// purchase and the wrapped key of its KeyDelivered event are read from the chain through the
// wallet's own node (eth_call, eth_getLogs); a node that answers otherwise is refused.
import { keccak_256 } from "@noble/hashes/sha3.js";
import { Refused, openModel, unwrapContentKey, x25519FromSignature } from "./sealed.js";

export { Refused, canonicalManifest, modelHash, openModel, readTar, unseal, unwrapContentKey,
         x25519FromSignature } from "./sealed.js";

const NO_PICKER = "This browser cannot save files as it verifies them (it has no File System " +
  "Access API, showDirectoryPicker): use Chrome, Edge or another Chromium-based browser, or " +
  "fetch the model with `modex fetch` and this wallet's key.";

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || data.error || `HTTP ${r.status}`);
  return data;
}

// The new folder's name: the listing's name, letters, digits, '.', '_', ' ' and '-' only.
const folderName = (name, id) => (name.replace(/[^\p{L}\p{N}._ -]+/gu, "-").trim() || "model") + `-model-${id}`;

// A new folder in `parent`; its files are written through FileSystemWritableFileStreams that
// stay open (their bytes sit in swap files) until keep() closes them, which makes them the
// files; discard() aborts them and removes the folder.
async function newFolder(parent, name) {
  let taken = true;
  try { await parent.getDirectoryHandle(name); } catch (e) { taken = false; }
  if (taken) throw new Refused(`A folder named "${name}" is already in the folder you picked: pick another, or move it away.`);
  const root = await parent.getDirectoryHandle(name, { create: true });
  const writers = [];
  return {
    name,
    async open(path) {
      const parts = path.split("/");
      let dir = root;
      for (const part of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(part, { create: true });
      const file = await dir.getFileHandle(parts[parts.length - 1], { create: true });
      const writer = await file.createWritable();
      writers.push(writer);
      return writer;
    },
    async keep() { for (const w of writers) await w.close(); },
    async discard() {
      await Promise.all(writers.map((w) => w.abort().catch(() => {})));
      await parent.removeEntry(name, { recursive: true }).catch(() => {});
    },
  };
}

// --- the chain, read through the wallet (EIP-1193) ---
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const keccak = (text) => hex(keccak_256(new TextEncoder().encode(text)));
const word = (n) => BigInt(n).toString(16).padStart(64, "0");  // an ABI uint256, no 0x
const wordAt = (data, i) => data.slice(2 + 64 * i, 2 + 64 * (i + 1));

async function call(wallet, to, signature, ...args) {
  const data = "0x" + keccak(signature).slice(0, 8) + args.map(word).join("");
  return wallet.request({ method: "eth_call", params: [{ to, data }, "latest"] });
}

// The model hash, and the wrapped key delivered for the buyer's purchase of this model, as the
// chain has them; the node's answer `d` names the contracts and the purchase, and must agree.
async function onChain(wallet, d, modelId) {
  const chainId = Number(await wallet.request({ method: "eth_chainId" }));
  if (chainId !== d.chain_id) {
    throw new Refused(`Your wallet is on chain ${chainId} and this exchange on chain ${d.chain_id}: switch networks in the wallet.`);
  }
  const purchase = await call(wallet, d.marketplace, "purchase(uint256)", d.purchase_id);
  const buyer = "0x" + wordAt(purchase, 0).slice(24);
  if (buyer.toLowerCase() !== d.account.toLowerCase() || BigInt("0x" + wordAt(purchase, 1)) !== BigInt(modelId)) {
    throw new Refused(`On-chain, purchase #${d.purchase_id} is not your wallet's purchase of model ${modelId}: this node's answer is wrong.`);
  }
  const modelHash = "0x" + wordAt(await call(wallet, d.registry, "modelHash(uint256)", modelId), 0);
  const logs = await wallet.request({ method: "eth_getLogs", params: [{
    address: d.marketplace, fromBlock: "0x0", toBlock: "latest",
    topics: ["0x" + keccak("KeyDelivered(uint256,bytes)"), "0x" + word(d.purchase_id)] }] });
  if (!logs.length) throw new Refused(`The chain holds no delivered key for purchase #${d.purchase_id} yet: wait for the seller's node.`);
  const data = logs[logs.length - 1].data;  // abi.encode(bytes): offset, length, the bytes
  const wrappedKey = "0x" + data.slice(2 + 128, 2 + 128 + 2 * Number(BigInt("0x" + wordAt(data, 1))));
  if (modelHash !== d.model_hash.toLowerCase() || wrappedKey !== d.wrapped_key.toLowerCase()) {
    throw new Refused("This node's model hash or wrapped key is not the chain's: its answer is refused.");
  }
  return { modelHash, wrappedKey };
}

const megabytes = (n) => (n / 1e6).toFixed(n < 1e7 ? 2 : 0) + " MB";

async function downloadAndVerify(box, say, progress) {
  if (!window.showDirectoryPicker) throw new Refused(NO_PICKER);
  if (!window.ethereum) throw new Refused("No browser wallet found (window.ethereum): connect one on the Wallet page.");
  say("Pick the folder to save the model in…");
  const parent = await window.showDirectoryPicker({ mode: "readwrite", id: "modex-models" });
  const d = await getJSON(box.dataset.url);
  say("Sign the encryption message in your wallet: it unlocks your key in this page only…");
  const [account] = await window.ethereum.request({ method: "eth_accounts" });
  if (!account || account.toLowerCase() !== d.account.toLowerCase()) {
    throw new Refused(`Your wallet's account is ${account || "none"}, not ${d.account} that bought this model: switch accounts in the wallet.`);
  }
  const chain = await onChain(window.ethereum, d, box.dataset.modelId);
  const signature = await window.ethereum.request({ method: "personal_sign", params: [d.encryption_message, account] });
  const { secret } = x25519FromSignature(signature);
  const key = await unwrapContentKey(chain.wrappedKey, secret, {
    chainId: d.chain_id, marketplace: d.marketplace, purchaseId: d.purchase_id });
  secret.fill(0);
  const folder = await newFolder(parent, folderName(d.name, box.dataset.modelId));
  try {
    say("Downloading, decrypting and checking every file…");
    const response = await fetch(d.sealed_url, { credentials: "same-origin" });
    if (!response.ok || !response.body) {
      const data = await response.json().catch(() => ({}));
      throw new Refused((data.error && data.error.message) || data.error || `The node answered HTTP ${response.status} for the sealed archive.`);
    }
    progress.classList.remove("hidden");
    const reader = response.body.getReader();
    const chunks = { next: () => reader.read() };
    const files = await openModel(chunks, key, chain.modelHash, (path) => folder.open(path), (n) => {
      if (d.sealed_size) progress.value = Math.min(100, (100 * n) / d.sealed_size);
    });
    await folder.keep();
    progress.value = 100;
    const bytes = files.reduce((n, f) => n + f.size, 0);
    return `Downloaded and verified: ${files.length} files (${megabytes(bytes)}) in the folder "${folder.name}", ` +
           `matching the on-chain model hash ${chain.modelHash.slice(0, 12)}….`;
  } catch (e) {
    await folder.discard();
    throw e;
  } finally {
    key.fill(0);
  }
}

function wire(box) {
  const button = box.querySelector("#browser-download-button");
  const status = box.querySelector("#browser-download-status");
  const progress = box.querySelector("#browser-download-progress");
  const say = (text, kind = "") => { status.textContent = text; status.className = "small " + kind; };
  button.disabled = false;
  button.addEventListener("click", () => {
    button.disabled = true;
    progress.value = 0;
    downloadAndVerify(box, say, progress)
      .then((done) => say(done, "ok"))
      .catch((e) => {
        progress.classList.add("hidden");
        if (e && e.name === "AbortError") say("No folder picked: nothing was downloaded.");
        else if (e && e.code === 4001) say("You rejected the signature in your wallet: nothing was downloaded.");
        else say("Refused: " + ((e && e.message) || e) + " Nothing was kept.", "error");
      })
      .finally(() => { button.disabled = false; });
  });
}

const box = typeof document !== "undefined" && document.getElementById("browser-download");
if (box) wire(box);
