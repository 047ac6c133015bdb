// "Wrong? Correct it" for a browser-wallet (EIP-1193) licence or subscription holder, beside Try
// it on the model page. This node holds no key of such a wallet, so the page does what
// node/feedback.py does for a keystore wallet: it builds the item (docs/formats.md §10) as
// canonical JSON (§1), seals it with HPKE base mode, DHKEM(X25519)/HKDF-SHA256/AES-256-GCM, to
// the seller's X25519 key (the listing metadata's feedback_key, checked by the node to be the
// owner's) with info = "modex/v1/feedback" || u64be(chainId) || Votes || u256be(modelId), and
// uploads only the stored bytes MDXFEED1 || enc || ciphertext (POST .../feedback/sealed: the node
// pins them unread and answers the CID). The wallet then sends Votes.sendFeedback(modelId, cid)
// (/api/tx/prepare "sendFeedback") and the page follows the receipt. The text never leaves this
// page in clear (tests/app/test_browser_feedback.py records every request).
import { keccak_256 } from "@noble/hashes/sha3.js";
import { Refused, concat, hexBytes, hpkeSuite, keyInfo, pyString, utf8 } from "./sealed.js";

export { Refused } from "./sealed.js";

const MAGIC = utf8("MDXFEED1");
// node/feedback.py's limits, in characters (code points, as Python's len counts them)
const MAX_INPUT_CHARS = 10_000;
const MAX_OUTPUT_CHARS = 1_000;
const MAX_NOTE_CHARS = 2_000;

// §1 canonical JSON (strings as sealed.js's pyString writes them). Integers only (an item holds
// no floats); keys sorted by code point.
const byCodePoint = (a, b) => {
  const x = [...a], y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i].codePointAt(0) - y[i].codePointAt(0);
  }
  return x.length - y.length;
};
export function canonicalJSON(value) {
  if (typeof value === "string") return pyString(value);
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Refused(`${value} is not a whole number.`);
    return String(value);
  }
  if (value === null || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return "[" + value.map(canonicalJSON).join(",") + "]";
  const keys = Object.keys(value).sort(byCodePoint);
  return "{" + keys.map((k) => pyString(k) + ":" + canonicalJSON(value[k])).join(",") + "}";
}

// EIP-55, as eth_utils.to_checksum_address writes the item's sender.
export function checksumAddress(address) {
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) throw new Refused(`${address} is not an address.`);
  const lower = address.slice(2).toLowerCase();
  const hash = keccak_256(utf8(lower));
  const nibble = (i) => (hash[i >> 1] >> (i % 2 ? 0 : 4)) & 15;
  return "0x" + Array.from(lower, (c, i) => (nibble(i) >= 8 ? c.toUpperCase() : c)).join("");
}

const chars = (text) => [...text].length;
function text(value, name, limit) {
  if (typeof value !== "string") throw new Refused(`The feedback's ${name} must be text.`);
  if (chars(value) > limit) throw new Refused(`The feedback's ${name} has ${chars(value)} characters; at most ${limit}.`);
  return value;
}

// node.feedback.build_item: the item's object, with the same checks (exactly one of label, note).
export function buildItem({ modelId, version, input, output, sender, createdAt, label = null, note = null }) {
  if ((label === null) === (note === null)) {
    throw new Refused("Give the right label (a label id) or a note saying what is wrong, not both.");
  }
  if (!text(input, "input", MAX_INPUT_CHARS).trim()) throw new Refused("The feedback needs the text the model answered wrongly.");
  if (!Number.isSafeInteger(version) || version < 1) throw new Refused(`A model version is a number from 1, got ${version}.`);
  const item = {
    modelId: BigInt(modelId), version, input, output: text(output, "output", MAX_OUTPUT_CHARS),
    sender: checksumAddress(sender), createdAt: createdAt ?? Math.floor(Date.now() / 1000),
  };
  if (label !== null) {
    if (!Number.isSafeInteger(label) || label < 0) throw new Refused(`The right label is a label id (0, 1, ...), got ${label}.`);
    item.label = label;
  } else {
    if (!text(note, "note", MAX_NOTE_CHARS).trim()) throw new Refused("The note is empty: say what is wrong with the answer.");
    item.note = note;
  }
  return item;
}

// The HPKE info: the key wrapping's layout (sealed.js keyInfo) under the feedback label, as
// node.feedback.feedback_info builds it from keywrap.key_info.
export function feedbackInfo(chainId, votes, modelId) {
  const bound = keyInfo(chainId, votes, modelId).subarray(utf8("modex/v1/key").length);
  return concat(utf8("modex/v1/feedback"), bound);
}

// The stored bytes: MAGIC || enc (32) || HPKE ciphertext of the item's canonical JSON (aad empty).
export async function sealItem(item, sellerKeyHex, { chainId, votes, modelId }) {
  const sellerKey = hexBytes(sellerKeyHex);
  if (sellerKey.length !== 32) throw new Refused("The seller's feedback key is not a 32-byte X25519 key.");
  const suite = hpkeSuite();
  const sender = await suite.createSenderContext({
    recipientPublicKey: await suite.kem.deserializePublicKey(sellerKey),
    info: feedbackInfo(chainId, votes, modelId),
  });
  const ciphertext = new Uint8Array(await sender.seal(utf8(canonicalJSON(item))));
  const enc = new Uint8Array(sender.enc);
  return concat(MAGIC, enc, ciphertext);
}

// --- the page ---

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

async function uploadSealed(url, stored) {
  const r = await fetch(url, {
    method: "POST", credentials: "same-origin", body: stored,
    headers: { "Content-Type": "application/octet-stream", Accept: "application/json", "X-CSRFToken": csrf() },
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Refused((data.error && data.error.message) || data.error || `HTTP ${r.status}`);
  return data.cid;
}

function correction(form) {
  const label = form.label.value.trim(), note = form.note.value;
  if (label && note.trim()) throw new Refused("Give the right label or a note saying what is wrong, not both.");
  if (label && !/^[0-9]+$/.test(label)) throw new Refused(`The right label is a whole number (0, 1, ...), got ${label}.`);
  return {
    input: form.text.value, output: form.output.value,
    label: label ? Number(label) : null, note: note.trim() ? note : null,
  };
}

async function sendCorrection(box, tell) {
  const { getJSON, needWallet, prepareAndSend, mined } = window.Modex;
  const form = box.querySelector("form");
  const wanted = correction(form);
  const [status, d] = await getJSON(box.dataset.sealUrl);
  if (status !== 200) throw new Refused((d.error && d.error.message) || d.error || `HTTP ${status}`);
  const [account] = await needWallet().request({ method: "eth_accounts" });
  if (!account || account.toLowerCase() !== d.account.toLowerCase()) {
    throw new Refused(`Your wallet's account is ${account || "none"}, not ${d.account} of this session: switch accounts in the wallet.`);
  }
  const item = buildItem({ ...wanted, modelId: d.model_id, version: d.version, sender: d.account });
  const stored = await sealItem(item, d.seller_key, { chainId: d.chain_id, votes: d.votes, modelId: d.model_id });
  if (stored.length > d.max_stored_bytes) throw new Refused(`The sealed item has ${stored.length} bytes; at most ${d.max_stored_bytes}: shorten the text or the note.`);
  tell("Sealed to the seller's key in this page; pinning the ciphertext…");
  const cid = await uploadSealed(box.dataset.sealedUrl, stored);
  const { hash } = await prepareAndSend({ action: "sendFeedback", modelId: d.model_id, cid }, tell);
  await mined(hash, tell);
  return { modelId: d.model_id, cid };
}

// Withdraw consent for the item just sent (Votes.withdrawFeedback; the seller's reader skips it).
async function withdraw(modelId, cid, tell) {
  const { prepareAndSend, mined } = window.Modex;
  const { hash } = await prepareAndSend({ action: "withdrawFeedback", modelId, cid }, tell);
  await mined(hash, tell);
}

function wire(box) {
  const button = box.querySelector("#feedback-seal-button");
  const undo = box.querySelector("#feedback-withdraw-button");
  const status = box.querySelector("#feedback-seal-status");
  const tell = (text, kind = "") => { status.textContent = text; status.className = "small " + kind; };
  const failed = (e) => tell(e instanceof Refused ? e.message : window.Modex.walletError(e), "error");
  const form = box.querySelector("form");
  const tried = document.querySelector("#try textarea[name=text]");
  box.addEventListener("toggle", () => {  // offer what was just tried, when no answer was kept
    if (box.open && !form.text.value && tried) form.text.value = tried.value;
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); if (!button.disabled) button.click(); });
  button.disabled = false;
  button.addEventListener("click", () => {
    button.disabled = true;
    undo.classList.add("hidden");
    sendCorrection(box, tell)
      .then(({ modelId, cid }) => {
        form.reset();
        tell(`Sent privately to the seller: only they can read it; the chain holds its CID ${cid} only.`, "ok");
        Object.assign(undo.dataset, { modelId, cid });
        undo.classList.remove("hidden");
      })
      .catch(failed)
      .finally(() => { button.disabled = false; });
  });
  undo.addEventListener("click", () => {
    undo.disabled = true;
    withdraw(Number(undo.dataset.modelId), undo.dataset.cid, tell)
      .then(() => {
        tell(`Withdrawn: the seller's tools skip item ${undo.dataset.cid} from now on (its ciphertext stays pinned).`, "ok");
        undo.classList.add("hidden");
      })
      .catch(failed)
      .finally(() => { undo.disabled = false; });
  });
}

const box = typeof document !== "undefined" && document.getElementById("feedback-sealed");
if (box) wire(box);
