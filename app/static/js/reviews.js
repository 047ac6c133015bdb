// Reviews and reports from a browser wallet (EIP-1193), on the model page: the node gives the
// document's EIP-712 typed data, the wallet signs it (eth_signTypedData_v4), the node checks the
// signature, pins the document and prepares the Votes call (/api/tx/prepare "review" or
// "report"), the wallet sends it and the page reloads once the index has its block.
// The JSON calls and the wallet's steps are modex.js's (window.Modex, loaded before this file).
"use strict";
(function () {
  const { postJSON, needWallet, walletError, prepareAndSend, mined, indexed } = window.Modex;
  const status = document.getElementById("review-status");
  const tell = (text) => { status.textContent = text; status.classList.remove("hidden"); };

  async function signAndSend(kind, modelId, body, done) {
    const asked = await postJSON("/api/models/" + modelId + "/" + kind + "/typed-data", body);
    tell("Sign the " + kind + " in your wallet…");
    const signature = await needWallet().request({
      method: "eth_signTypedData_v4", params: [asked.signer, JSON.stringify(asked.typedData)],
    });
    const version = asked.typedData.message.version;
    const { hash } = await prepareAndSend({ action: kind, modelId, ...body, version, signature }, tell);
    const { block } = await mined(hash, tell);
    await indexed(block);
    tell(done);
    window.location.reload();
  }

  function wire(id, kind, body, done) {
    const button = document.getElementById(id);
    if (!button) return;
    button.addEventListener("click", () => {
      button.disabled = true;
      const modelId = Number(button.dataset["eip1193" + kind[0].toUpperCase() + kind.slice(1)]);
      signAndSend(kind, modelId, body(button.form), done)
        .catch((e) => { button.disabled = false; tell(walletError(e)); });
    });
  }

  wire("eip1193-review", "review", (f) => ({ score: Number(f.score.value), text: f.text.value }),
       "Your review is on-chain.");
  wire("eip1193-report", "report", (f) => ({ reason: f.reason.value }), "Reported.");
})();
