// Seller from a browser wallet (EIP-1193): the publish page's transactions (list, claimMetrics,
// setOperator) and the model page's setPrice / setActive. The node prepares each transaction
// (POST /api/tx/prepare), the wallet signs and sends it, this page follows /api/tx/<hash>.
// The JSON calls and the wallet's steps are modex.js's (window.Modex, loaded before this file).
"use strict";
(function () {
  const { walletError, prepareAndSend, mined, indexed } = window.Modex;

  // --- publish: list, then claim and setOperator; the node says which step is next ---
  function publishing(box) {
    const button = document.getElementById("publish-sign");
    const status = document.getElementById("publish-status");
    const tell = (text) => { status.textContent = text; status.classList.remove("hidden"); };
    const SENT = "modex-publish-list-" + box.dataset.upload;  // the list sent, across a reload
    async function run() {
      let listTx = sessionStorage.getItem(SENT);
      for (;;) {
        if (listTx) {
          await mined(listTx, tell).catch((e) => { sessionStorage.removeItem(SENT); throw e; });
        }
        const body = { action: "publish", upload: box.dataset.upload };
        if (listTx) body.tx = listTx;
        const { prepared, hash } = await prepareAndSend(body, tell);
        if (prepared.step === "list") {
          listTx = hash;
          sessionStorage.setItem(SENT, hash);
          continue;
        }
        const { block } = await mined(hash, tell);
        if (prepared.left === 1) {
          sessionStorage.removeItem(SENT);
          tell("Published; opening its page…");
          await indexed(block);
          window.location.assign(box.dataset.done);
          return;
        }
        tell("Done: " + prepared.step + "; next…");
      }
    }
    button.addEventListener("click", () => {
      button.disabled = true;
      run().catch((e) => { button.disabled = false; tell(walletError(e)); });
    });
  }

  // --- the owner's listing on the model page: setPrice, setActive ---
  function listing(box) {
    const status = document.getElementById("listing-status");
    const tell = (text) => { status.textContent = text; status.classList.remove("hidden"); };
    const modelId = Number(box.dataset.listing);
    function change(button, body, done) {
      button.addEventListener("click", () => {
        button.disabled = true;
        prepareAndSend({ modelId, ...body() }, tell)
          .then(({ hash }) => mined(hash, tell))
          .then(({ block }) => indexed(block))
          .then(() => { tell(done); window.location.reload(); })
          .catch((e) => { button.disabled = false; tell(walletError(e)); });
      });
    }
    const price = document.getElementById("listing-set-price");
    change(price, () => ({ action: "setPrice", price: document.getElementById("listing-price").value }),
           "Price changed.");
    const active = document.getElementById("listing-set-active");
    change(active, () => ({ action: "setActive", active: active.dataset.active === "true" }),
           "Sale opened or closed.");
  }

  document.addEventListener("DOMContentLoaded", () => {
    const box = document.getElementById("publish-wallet");
    if (box) publishing(box);
    const terms = document.getElementById("listing-terms");
    if (terms) listing(terms);
  });
})();
