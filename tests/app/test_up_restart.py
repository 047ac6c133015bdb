"""`modex up` keeps what happened across restarts, and starts beside other programs.

The README's first command run twice showed an empty market the second time: the default chain
lived in memory and was reset at every start, while a file recording "demo already published"
survived, so the demo was never listed again; a purchase, earnings and content keys were gone
too. Here the default stack is started with the demo, stopped each way (SIGTERM, Ctrl-C as a
terminal sends it, SIGKILL), and started again: the same listings (not an empty market, not the
demo listed twice), the same balances, earnings and licences, keys delivered before still
unwrap to the vault's key, and a purchase made after the restart is delivered.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time

import httpx
import psutil
import pytest

from modex import demo
from node import market as market_mod
from node.config import load_config
from node.fetch import unwrap_for
from node.keystore import load_signer
from node.keyvault import KeyVault
from node.stack import Stack
from tests.app.conftest import modex_up_process

pytestmark = [pytest.mark.slow, pytest.mark.anvil, pytest.mark.timeout(900)]


def market(url: str) -> list[tuple]:
    """The listings the UI serves, once its indexer has caught up with the chain."""
    deadline = time.monotonic() + 120
    while True:
        health = httpx.get(f"{url}/api/health", timeout=30).json()
        if health["indexed_block"] is not None and health["indexed_block"] >= health["block"]:
            break
        assert time.monotonic() < deadline, health
        time.sleep(0.5)
    models = httpx.get(
        f"{url}/api/models", params={"per_page": 100, "sort": "price"}, timeout=30
    ).json()["models"]
    return sorted((m["model_id"], m["name"], m["price"], m["seller"]) for m in models)


class Node:
    """The running stack's chain, demo wallets and key vault, reached as another program would:
    the chain by the URL the start-up line prints, the files in the data dir."""

    def __init__(self, data, url: str, log_path):
        health = httpx.get(f"{url}/api/health", timeout=30).json()
        assert health["endpoint"].startswith("http://127.0.0.1:"), (
            f"the default chain is {health['endpoint']!r}: it keeps nothing across restarts"
        )
        assert f"local anvil {health['endpoint']}" in log_path.read_text()
        self.chain = Stack(  # as a `modex` command gets it
            load_config(
                None,
                env={},
                data_dir=data,
                chain=health["endpoint"],
                deployment_file=data / "chain" / f"{health['chain_id']}.json",
            )
        ).chain
        roles = json.loads((data / "demo-accounts.json").read_text())
        self.wallets = {
            role: load_signer(data / "wallets" / f"{address.lower()}.json", demo.DEMO_PASSWORD)
            for role, address in roles.items()
        }
        self.vault = KeyVault(data / "chain" / "keyvault.json", demo.DEMO_PASSWORD)

    def state(self, listed: list[int]) -> dict:
        """What must survive a restart: balances, earnings, licences, ids, the head block."""
        chain, market_ = self.chain, self.chain.marketplace
        head = chain.get_block("latest")
        return {
            "balances": {r: chain.balance(w.address) for r, w in self.wallets.items()},
            "credited": {
                r: chain.call(market_.functions.credited(w.address))
                for r, w in self.wallets.items()
            },
            "licences": {
                (m, r): chain.call(market_.functions.hasLicense(m, w.address))
                for m in listed
                for r, w in self.wallets.items()
            },
            "models": chain.call(chain.registry.functions.modelCount()),
            "next_purchase": chain.call(market_.functions.nextPurchaseId()),
            "head": (head["number"], bytes(head["hash"])),
        }

    def check_state(self, before: dict, listed: list[int], how: str) -> None:
        """The same as ``before``; the chain may have grown since (blocks mined at start), but
        the head it had is still on it."""
        now = self.state(listed)
        number, block_hash = before["head"]
        assert bytes(self.chain.get_block(number)["hash"]) == block_hash, (
            f"block {number} was lost in a {how} restart"
        )
        now.pop("head")
        assert now == {k: v for k, v in before.items() if k != "head"}, f"after {how}"

    def buy(self, role: str, model_id: int) -> int:
        """Buy as a demo wallet; the seller's worker delivers; check the key it wrapped."""
        purchase = market_mod.buy(self.chain, self.wallets[role], model_id)
        market_mod.wait_for_key(self.chain, purchase.purchase_id, timeout=120)
        self.check_key(role, model_id, purchase.purchase_id)
        return purchase.purchase_id

    def check_key(self, role: str, model_id: int, purchase_id: int) -> None:
        """The key delivered for the purchase is the one the vault holds for the model."""
        wrapped = market_mod.delivered_key(self.chain, purchase_id)
        assert wrapped is not None, f"no key delivered for purchase {purchase_id}"
        stored = self.vault.for_model(self.chain.chain_id, model_id, self.chain.registry.address)
        assert stored is not None, f"the key vault lost model {model_id}'s key"
        assert unwrap_for(self.chain, self.wallets[role], purchase_id, wrapped) == stored.key

    def transfer(self, source: str, target: str, wei: int) -> None:
        """A plain transfer between demo wallets (one block)."""
        w3, signer = self.chain.w3, self.wallets[source]
        tx = {
            "to": self.wallets[target].address,
            "value": wei,
            "gas": 21000,
            "chainId": w3.eth.chain_id,
            "nonce": w3.eth.get_transaction_count(signer.address),
            "maxFeePerGas": 10 * 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        sent = w3.eth.send_raw_transaction(signer.sign_transaction(tx))
        assert w3.eth.wait_for_transaction_receipt(sent)["status"] == 1

    def wait_saved(self, folder) -> None:
        """Until the chain's state file holds the head block (the periodic save, ~1 s)."""
        head = self.chain.block_number()
        deadline = time.monotonic() + 30
        while True:
            number = json.loads((folder / "state.json").read_text())["best_block_number"]
            if (int(number, 16) if isinstance(number, str) else int(number)) >= head:
                return
            assert time.monotonic() < deadline, "the chain's state was not saved within 30 s"
            time.sleep(0.2)


def stop(proc, how: str, log_path) -> None:
    """Stop `modex up` as a supervisor (SIGTERM), a terminal's Ctrl-C (SIGINT to the whole
    process group) or the kernel (SIGKILL) would; nothing it started may outlive it (its anvil
    gets SIGTERM from the kernel when it is killed)."""
    children = psutil.Process(proc.pid).children(recursive=True)
    if how == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(getattr(signal, how))
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # modex up prints every thread's stack
        time.sleep(2)
        raise AssertionError(
            f"modex up still runs 60 s after {how}:\n" + log_path.read_text()[-8000:]
        ) from None
    assert code == (-signal.SIGKILL if how == "SIGKILL" else 0), log_path.read_text()[-3000:]
    assert psutil.wait_procs(children, timeout=15)[1] == [], f"left running after {how}"


@contextlib.contextmanager
def restarted(data, first_market: list, how: str):
    """`modex up` started again after a stop by ``how``: the same market, the demo not listed
    again; yields (the process, a Node, the log path)."""
    with modex_up_process(data, new_session=True) as (proc, url, log_path):
        assert market(url) == first_market, f"the market after a {how} restart"
        assert "Publishing" not in log_path.read_text(), "the demo was listed again"
        yield proc, Node(data, url, log_path), log_path


def test_the_default_stack_keeps_the_market_across_restarts(tmp_path):
    data = tmp_path / "node"
    with modex_up_process(data, new_session=True) as (proc, url, log_path):
        first = market(url)
        assert [(name, price) for _, name, price, _ in first] == [
            (d["name"], d["price"]) for d in demo.DEMO_LISTINGS
        ]
        stop(proc, "SIGTERM", log_path)
    ids = [model_id for model_id, *_ in first]

    with restarted(data, first, "SIGTERM") as (proc, node, log_path):
        sold = node.buy("buyer", ids[0])
        node.transfer("validator", "buyer", 12345)  # just before Ctrl-C: only the last save has it
        before = node.state(ids)
        stop(proc, "SIGINT", log_path)
        assert "the local chain (state saved in" in log_path.read_text().split("stopping…")[-1]

    with restarted(data, first, "Ctrl-C") as (proc, node, log_path):
        node.check_state(before, ids, "Ctrl-C")
        node.check_key("buyer", ids[0], sold)
        sold_too = node.buy("buyer", ids[1])
        node.wait_saved(data / "chain")
        before = node.state(ids)
        assert "anvil" in [p.name() for p in psutil.Process(proc.pid).children()]
        stop(proc, "SIGKILL", log_path)

    with restarted(data, first, "SIGKILL") as (proc, node, log_path):
        node.check_state(before, ids, "SIGKILL")
        node.check_key("buyer", ids[0], sold)
        node.check_key("buyer", ids[1], sold_too)
        node.buy("validator", ids[0])  # the worker and its key vault deliver after a SIGKILL
