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
    if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
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
  const eth = () => window.ethereum;
  function say(text) { const s = document.getElementById("eip1193-status"); if (s) s.textContent = text; else alert(text); }

  async function connect() {
    if (!eth()) { say("No browser wallet found (window.ethereum). Install MetaMask or use a keystore wallet."); return; }
    const [account] = await eth().request({ method: "eth_requestAccounts" });
    await postJSON("/api/wallet/connect", { address: account });
    window.location.reload();
  }
  async function enableEncryption() {
    const [, m] = await getJSON("/api/wallet/encryption-message");
    const accounts = await eth().request({ method: "eth_accounts" });
    const sig = await eth().request({ method: "personal_sign", params: [m.message, accounts[0]] });
    const r = await postJSON("/api/wallet/encryption-key", { signature: sig });
    say("Encryption key ready: " + r.x25519_public.slice(0, 18) + "…");
  }
  async function sendPrepared(body) {
    const { tx } = await postJSON("/api/tx/prepare", body);
    const hash = await eth().request({ method: "eth_sendTransaction", params: [tx] });
    for (;;) {
      const [, r] = await getJSON("/api/tx/" + hash);
      if (r.state === "mined") return r;
      if (r.state === "reverted") throw new Error("The transaction reverted; nothing was charged beyond gas.");
      await sleep(1000);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const job = document.getElementById("job");
    if (job) followJob(job);
    const delivery = document.getElementById("delivery");
    if (delivery) {
      if (delivery.classList.contains("state-delivered")) delivery.dataset.wasDelivered = "1";
      else followDelivery(delivery);
    }
    const c = document.getElementById("eip1193-connect");
    if (c) c.addEventListener("click", () => connect().catch((e) => say(e.message)));
    const enc = document.getElementById("eip1193-enc");
    if (enc) enc.addEventListener("click", () => enableEncryption().catch((e) => say(e.message)));
    document.querySelectorAll("[data-eip1193-buy]").forEach((b) => b.addEventListener("click", () => {
      const form = document.getElementById("buy-form");
      sendPrepared({ action: "buy", modelId: Number(b.dataset.eip1193Buy), maxPrice: form.max_price.value })
        .then(() => window.location.reload()).catch((e) => alert(e.message));
    }));
  });
})();
