// Modex UI: small vanilla JS. Polls job progress and key delivery; the EIP-1193 browser-wallet
// path (the server prepares a transaction, the wallet signs and sends it, the page follows the
// receipt). Everything else works without JS.
"use strict";
(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    return [r.status, await r.json().catch(() => ({}))];
  }
  async function postJSON(url, body) {
    const r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify(body),
    });
    const data = await r.json().catch(() => ({}));
    // {"error": sentence} or, from /auth, {"error": {"code", "message"}}
    if (!r.ok) {
      const e = new Error((data.error && data.error.message) || data.error || ("HTTP " + r.status));
      e.serverCode = data.error && data.error.code;
      throw e;
    }
    return data;
  }
  const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

  // --- background job page ---
  async function followJob(box) {
    const bar = document.getElementById("job-progress"), step = document.getElementById("job-step");
    for (;;) {
      const [status, job] = await getJSON(box.dataset.url);
      if (status !== 200) { step.textContent = job.error || "The job is gone."; return; }
      step.textContent = job.step + (job.total ? ` (${job.done || 0} / ${job.total})` : "");
      if (job.percent !== null && job.percent !== undefined) bar.value = job.percent;
      if (job.state === "failed") {
        const cancel = document.getElementById("job-cancel");
        if (cancel) cancel.remove();
        const err = document.getElementById("job-error");
        err.textContent = job.error; err.classList.remove("hidden"); bar.value = 0; return;
      }
      if (job.state === "done") {
        bar.value = 100;
        if (job.result && job.result.show) {  // the page shows the result itself: render it once
          if (box.dataset.state !== "done") window.location.reload();
          return;
        }
        const target = (job.result && job.result.url) || box.dataset.next;
        if (target) {
          const link = document.getElementById("job-link");
          link.href = target; document.getElementById("job-done").classList.remove("hidden");
          window.location.assign(target);
        }
        return;
      }
      await sleep(500);
    }
  }

  // --- delivery status on the model page ---
  async function followDelivery(box) {
    for (;;) {
      const [status, d] = await getJSON(box.dataset.url);
      if (status === 200) {
        box.className = "delivery state-" + d.state;
        box.querySelector(".delivery-text").textContent = d.message;
        if (d.state === "delivered") {
          if (!box.dataset.wasDelivered) { window.location.reload(); }
          return;
        }
        if (d.state === "refunded") return;
      }
      await sleep(1000);
    }
  }

  // --- EIP-1193 browser wallet ---
  // The server prepares each transaction (POST /api/tx/prepare: a dry run first, so a call the
  // contract would refuse is a sentence before the wallet opens); the wallet signs and sends it;
  // the page follows the receipt. No key or signature is kept here or on the server.
  const eth = () => window.ethereum;
  const REJECTED = "You rejected the request in your wallet: nothing was signed or sent.";
  const SAID = "modex-eip1193-said";  // a message carried over the reload that shows the result
  function say(text) {
    const s = document.getElementById("eip1193-status");
    if (s) { s.textContent = text; s.classList.remove("hidden"); } else alert(text);
  }
  function walletError(e) {
    // EIP-1193: code 4001 is the user's refusal (Reject in MetaMask); ethers-style wrappers say
    // ACTION_REJECTED. Anything else is shown as it came (the server's sentences included).
    if (e && (e.code === 4001 || e.code === "ACTION_REJECTED")) return REJECTED;
    return (e && e.message) || String(e);
  }
  function needWallet() {
    if (!eth()) throw new Error("No browser wallet found (window.ethereum). Install MetaMask or use a keystore wallet.");
    return eth();
  }

  // Sign-In with Ethereum (EIP-4361): the wallet signs this site's message with a nonce from the
  // node (personal_sign); the node checks it and binds the address to the session. Then connect.
  async function signIn(account) {
    const [, health] = await getJSON("/api/health");
    const [, issued] = await getJSON("/auth/nonce");
    const message = location.host + " wants you to sign in with your Ethereum account:\n" +
      account + "\n\nSign in to this Modex exchange.\n\nURI: " + location.origin +
      "\nVersion: 1\nChain ID: " + health.chain_id + "\nNonce: " + issued.nonce +
      "\nIssued At: " + new Date().toISOString();
    const signature = await eth().request({ method: "personal_sign", params: [message, account] });
    return (await postJSON("/auth/siwe", { message, signature })).address;
  }
  async function connect() {
    const [account] = await needWallet().request({ method: "eth_requestAccounts" });
    const address = await signIn(account);
    await postJSON("/api/wallet/connect", { address });
    window.location.reload();
  }
  // docs/formats.md §4: sk = HKDF-SHA256(ikm = the wallet's 65-byte personal_sign signature of the
  // node's message, salt = "", info = "modex/v1/x25519"); the node gets X25519(sk, 9) only. The
  // signature is the seed of the secret key: it never leaves this page.
  const hexBytes = (hex) => Uint8Array.from(hex.slice(2).match(/../g) || [], (h) => parseInt(h, 16));
  const bytesHex = (b) => "0x" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  function x25519Base(secret) {  // RFC 7748 X25519(k, 9), in BigInt; run once per wallet
    const P = 2n ** 255n - 19n, mod = (a) => ((a % P) + P) % P;
    const k = Uint8Array.from(secret); k[0] &= 248; k[31] &= 127; k[31] |= 64;
    const n = k.reduceRight((acc, byte) => (acc << 8n) | BigInt(byte), 0n);
    let [x2, z2, x3, z3, swap] = [1n, 0n, 9n, 1n, 0n];
    for (let t = 254n; t >= 0n; t--) {
      const bit = (n >> t) & 1n;
      if (swap ^ bit) [x2, x3, z2, z3] = [x3, x2, z3, z2];
      swap = bit;
      const a = mod(x2 + z2), aa = a * a % P, b = mod(x2 - z2), bb = b * b % P, e = mod(aa - bb);
      const da = mod(x3 - z3) * a % P, cb = mod(x3 + z3) * b % P;
      [x3, z3] = [mod((da + cb) ** 2n), mod(9n * mod(da - cb) ** 2n)];
      [x2, z2] = [aa * bb % P, e * mod(aa + 121665n * e) % P];
    }
    if (swap) [x2, z2] = [x3, z3];
    let inv = 1n, base = z2, ex = P - 2n;  // z2^(p-2) = 1/z2
    for (; ex > 0n; ex >>= 1n, base = base * base % P) if (ex & 1n) inv = inv * base % P;
    let u = x2 * inv % P;
    return Uint8Array.from({ length: 32 }, () => { const byte = Number(u & 255n); u >>= 8n; return byte; });
  }
  async function x25519FromSignature(signature) {
    const sig = hexBytes(signature);
    if (sig.length !== 65) throw new Error("The wallet returned no 65-byte signature; sign again.");
    if (!window.crypto || !crypto.subtle) {
      throw new Error("This page cannot derive the key here: open the node at http://127.0.0.1 (WebCrypto needs a secure context).");
    }
    const ikm = await crypto.subtle.importKey("raw", sig, "HKDF", false, ["deriveBits"]);
    const bits = await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0),
      info: new TextEncoder().encode("modex/v1/x25519") }, ikm, 256);
    return bytesHex(x25519Base(new Uint8Array(bits)));
  }
  async function enableEncryption() {
    const [, m] = await getJSON("/api/wallet/encryption-message");
    const accounts = await needWallet().request({ method: "eth_accounts" });
    const sig = await eth().request({ method: "personal_sign", params: [m.message, accounts[0]] });
    const r = await postJSON("/api/wallet/encryption-key", { x25519_public: await x25519FromSignature(sig) });
    sessionStorage.setItem(SAID, "Encryption key ready: " + r.x25519_public.slice(0, 18) + "… (derived in this browser)");
    window.location.reload();
  }
  // Prepare (the node's dry run first) and hand the transaction to the wallet: {prepared, hash}.
  async function prepareAndSend(body, tell = say) {
    const prepared = await postJSON("/api/tx/prepare", body);
    tell("Confirm the transaction in your wallet…");
    const hash = await needWallet().request({ method: "eth_sendTransaction", params: [prepared.tx] });
    return { prepared, hash };
  }
  // Until mined: the node's receipt ({state, block}), or an error when the contract refused it.
  async function mined(hash, tell = say) {
    tell("Sent (" + hash.slice(0, 10) + "…); waiting for it to be mined…");
    for (;;) {
      const [status, r] = await getJSON("/api/tx/" + hash);
      if (status >= 400 && status < 500) throw new Error((r.error && r.error.message) || "HTTP " + status);
      if (r.state === "mined") return r;
      if (r.state === "reverted") {
        throw new Error("The transaction reverted on-chain (block " + r.block + "): the contract " +
                        "refused it and nothing changed; only its gas was spent.");
      }
      await sleep(1000);
    }
  }
  async function sendPrepared(body) {
    const { prepared, hash } = await prepareAndSend(body);
    const receipt = await mined(hash);
    const { tx, ...said } = prepared;
    return { ...receipt, ...said };
  }
  // The pages read the indexer: go on once it has ``block`` (or after 30 s).
  async function indexed(block) {
    for (let i = 0; i < 60; i++) {
      const [status, h] = await getJSON("/api/health");
      if (status === 200 && h.indexed_block !== null && h.indexed_block >= block) return;
      await sleep(500);
    }
  }
  async function reloadWhenIndexed(receipt, text) {
    await indexed(receipt.block);
    sessionStorage.setItem(SAID, text);
    window.location.reload();
  }
  // Some actions are prepared one transaction at a time, the server saying which comes next:
  // a withdrawal releases each of the wallet's sales past its challenge period first
  // ("step": "release"), then withdraws; a payment in an ERC-20 (subscribe, open or top up a
  // channel) approves the token first ("step": "approve"), then pays.
  async function sendSteps(body) {
    for (;;) {
      const r = await sendPrepared(body);
      if (r.step === "release") {
        say("Released the revenue of purchase #" + r.purchaseId + (r.left > 1 ? " (" + (r.left - 1) + " more to release)" : "") + "…");
      } else if (r.step === "approve") {
        say("Approved " + r.amount + " for the payment; now confirm the payment itself…");
      } else return r;
    }
  }
  // Try it from a browser wallet: the node gives the request's EIP-712 typed data (and, paid on
  // a channel, the voucher's), the wallet signs them here (eth_signTypedData_v4), the node hands
  // the signed request to its inference service; the answer shows in the Try it box. A voucher
  // the service calls stale (it holds a later one) is asked for and signed once more.
  async function tryIt(b) {
    const out = document.getElementById("try-result");
    const show = (text, ok) => { out.textContent = text; out.className = "flash " + (ok ? "ok" : "error") + " try-it"; };
    const url = "/api/models/" + b.dataset.eip1193Try + "/try";
    for (let attempt = 0; ; attempt++) {
      const asked = await postJSON(url + "/typed-data", { text: b.form.text.value });
      const sign = (data) => needWallet().request({ method: "eth_signTypedData_v4", params: [asked.body.signer, JSON.stringify(data)] });
      show("Sign the request in your wallet" + (asked.voucher ? " (and the voucher that pays it)" : "") + "…", true);
      const signed = { ...asked.body, signature: await sign(asked.request) };
      if (asked.voucher) signed.voucherSignature = await sign(asked.voucher);
      show("Running…", true);
      try {
        const r = await postJSON(url, signed);
        show(r.said, true);
        const row = asked.voucher && document.querySelector('[data-channel="' + asked.body.channelId + '"] .channel-remaining');
        if (row && r.left) row.textContent = r.left;
        return;
      } catch (e) {
        if (e.serverCode !== "voucher_stale" || attempt > 0) throw e;
      }
    }
  }
  // One browser-wallet button: prepare + send on click, the result (or why not) in the status.
  // Enter in its form (a browser submits a form of one field on Enter, to the keystore route its
  // action names) goes through the form's first wallet button instead, as a browser's default
  // button would.
  function wire(selector, body, done, send = sendPrepared) {
    document.querySelectorAll(selector).forEach((b) => {
      b.addEventListener("click", () => {
        b.disabled = true;
        send(body(b)).then((r) => reloadWhenIndexed(r, done(b)))
          .catch((e) => { b.disabled = false; say(walletError(e)); });
      });
      if (b.form && !b.form.dataset.walletButton) {
        b.form.dataset.walletButton = selector;
        b.form.addEventListener("submit", (e) => { e.preventDefault(); if (!b.disabled) b.click(); });
      }
    });
  }

  // What the page modules (js/seller-wallet.js) share with this file, defined once here.
  window.Modex = { getJSON, postJSON, sleep, needWallet, walletError, prepareAndSend, mined, indexed };

  document.addEventListener("DOMContentLoaded", () => {
    const job = document.getElementById("job");
    if (job) followJob(job);
    const delivery = document.getElementById("delivery");
    if (delivery) {
      if (delivery.classList.contains("state-delivered")) delivery.dataset.wasDelivered = "1";
      else followDelivery(delivery);
    }
    const said = sessionStorage.getItem(SAID);
    if (said) { sessionStorage.removeItem(SAID); say(said); }
    const c = document.getElementById("eip1193-connect");
    if (c) c.addEventListener("click", () => connect().catch((e) => say(walletError(e))));
    const enc = document.getElementById("eip1193-enc");
    if (enc) enc.addEventListener("click", () => enableEncryption().catch((e) => say(walletError(e))));
    wire("[data-eip1193-buy]", (b) => ({ action: "buy", modelId: Number(b.dataset.eip1193Buy),
                                         maxPrice: b.form.max_price.value }),
         () => "Bought: the seller's node delivers your key in a moment.");
    wire("[data-eip1193-vote]", (b) => ({ action: "vote", modelId: Number(b.dataset.eip1193Vote),
                                          score: Number(b.form.score.value) }),
         (b) => "Your vote (" + b.form.score.value + "★) is recorded on-chain.");
    wire("[data-eip1193-refund]", (b) => ({ action: "refund", modelId: Number(b.dataset.eip1193Refund) }),
         () => "Refunded: the price is credited to your wallet; withdraw it on the Wallet page.");
    wire("[data-eip1193-withdraw]", () => ({ action: "withdraw" }),
         (b) => "Withdrew " + b.dataset.eip1193Withdraw + " to your wallet.", sendSteps);
    wire("[data-eip1193-subscribe]", (b) => ({ action: "subscribe", modelId: Number(b.dataset.eip1193Subscribe),
                                               periods: b.form.periods.value }),
         () => "Subscribed: Try it is paid with your subscription.", sendSteps);
    wire("[data-eip1193-channel]", (b) => ({ action: "openChannel", modelId: Number(b.dataset.eip1193Channel),
                                             amount: b.form.amount.value, days: b.form.days.value }),
         (b) => "Opened a payment channel with " + b.form.amount.value + " " + b.dataset.symbol +
                ": Try it pays each call from it.", sendSteps);
    wire("[data-eip1193-topup]", (b) => ({ action: "topUp", channelId: b.dataset.eip1193Topup, amount: b.form.amount.value }),
         (b) => "Topped up channel #" + b.dataset.eip1193Topup + ".", sendSteps);
    wire("[data-eip1193-extend]", (b) => ({ action: "extend", channelId: b.dataset.eip1193Extend, days: b.form.days.value }),
         (b) => "Extended channel #" + b.dataset.eip1193Extend + " by " + b.form.days.value + " days.");
    wire("[data-eip1193-stake]", (b) => ({ action: "stake", amount: b.form.amount.value }),
         (b) => "Staked " + b.form.amount.value + " ETH: you can validate listings, or name an attester.");
    wire("[data-eip1193-attester]", (b) => ({ action: "setAttester", attester: b.form.attester.value }),
         (b) => "Attester set: " + b.form.attester.value + " attests for this wallet.");
    wire("[data-eip1193-reclaim]", (b) => ({ action: "reclaim", channelId: b.dataset.eip1193Reclaim }),
         (b) => "Channel #" + b.dataset.eip1193Reclaim + " closed: " + b.dataset.amount + " came back to you.");
    document.querySelectorAll("[data-eip1193-try]").forEach((b) => b.addEventListener("click", () => {
      b.disabled = true;
      tryIt(b).catch((e) => {
        const out = document.getElementById("try-result");
        out.textContent = walletError(e); out.className = "flash error try-it";
      }).finally(() => { b.disabled = false; });
    }));
  });
})();
