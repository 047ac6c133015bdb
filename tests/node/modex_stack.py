"""A whole Modex stack for journey tests: chain + deployed suite + store + three wallets.

``make_stack(kind, tmp_path, ...)`` deploys a fresh suite on the embedded chain (kind
"embedded", in-process) or on a running anvil (kind "anvil", with an IPFS daemon URL), writes a
deployment file, creates encrypted keystores for the seller, the buyer and the validator, and
returns a ``Stack`` whose ``cli(role, ...)`` runs ``modex`` as that person (in this process, so
the embedded chain is shared) and whose ``modex_cmd(role, ...)`` builds the same command for a
subprocess (anvil only: a subprocess has its own embedded chain).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account

from node.chain import Chain, connect
from node.config import Config
from node.deploy import deploy_suite, write_deployment
from node.devchain import ANVIL_MNEMONIC
from node.keystore import import_private_key
from node.keyvault import KeyVault
from node.session import open_configured_store
from node.signer import LocalSigner

ROLES = ("seller", "buyer", "validator", "buyer2")
PASSWORD = "journey password"
FAST_VAULT = {"n": 2**10, "r": 8, "p": 1}


def dev_key(kind: str, index: int) -> str:
    if kind == "embedded":
        return "0x" + (index + 1).to_bytes(32, "big").hex()
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key.hex()


@dataclass
class Stack:
    kind: str
    root: Path
    chain_url: str
    ipfs: str
    deployment: Path
    chain: Chain
    signers: dict[str, LocalSigner] = field(default_factory=dict)

    def data_dir(self, role: str) -> Path:
        return self.root / role

    def config(self, role: str) -> Config:
        return Config(data_dir=self.data_dir(role), chain=self.chain_url, ipfs=self.ipfs,
                      store_dir=self.store_dir, deployment_file=self.deployment,
                      poll_interval=0.2, rpc_retries=2, rpc_timeout=5.0)

    def store(self, role: str = "seller"):
        """Each person's store. Embedded: ONE shared folder stands in for the IPFS network."""
        return open_configured_store(self.config(role))

    def vault(self, role: str = "seller") -> KeyVault:
        return KeyVault(self.config(role).keyvault, PASSWORD, scrypt_params=FAST_VAULT)

    def args(self, role: str) -> list[str]:
        c = self.config(role)
        return ["--data-dir", str(c.data_dir), "--chain", self.chain_url, "--ipfs", c.ipfs,
                "--deployment", str(self.deployment)]

    def env(self) -> dict:
        return {**os.environ, "MODEX_PASSWORD": PASSWORD, "MODEX_STORE_DIR": str(self.store_dir),
                "MODEX_RPC_RETRIES": "2", "MODEX_RPC_TIMEOUT": "5", "MODEX_POLL_INTERVAL": "0.2"}

    @property
    def store_dir(self) -> Path:
        return self.root / "ipfs"

    def cli(self, role: str, command: str, *argv: str) -> tuple[int, str, str]:
        """Run ``modex COMMAND ... --<node options of ROLE>`` in-process; (code, stdout, stderr)."""
        from node.cli import main

        out, err = io.StringIO(), io.StringIO()
        saved = dict(os.environ)
        os.environ.update(self.env())
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main([command, *argv, *self.args(role)])
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return code, out.getvalue(), err.getvalue()

    def modex_cmd(self, role: str, command: str, *argv: str) -> list[str]:
        return [sys.executable, "-m", "node.cli", command, *argv, *self.args(role)]

    def time_travel(self, seconds: int) -> None:
        w3 = self.chain.w3
        if self.kind == "embedded":
            now = w3.eth.get_block("latest")["timestamp"]
            w3.provider.ethereum_tester.time_travel(now + seconds)
        else:
            w3.provider.make_request("evm_increaseTime", [seconds])
            w3.provider.make_request("evm_mine", [])


def make_stack(kind: str, root: Path, *, anvil_url: str | None = None, ipfs: str = "embedded",
               **params) -> Stack:
    chain_url = "embedded" if kind == "embedded" else anvil_url
    w3 = connect(chain_url)
    record = deploy_suite(w3, w3.eth.accounts[0], **params)  # a dev account the node unlocks
    deployment = write_deployment(record, root / "deployments")
    stack = Stack(kind, root, chain_url, ipfs, deployment,
                  Chain.from_config(Config(data_dir=root / "deployer", chain=chain_url,
                                           deployment_file=deployment)))
    for i, role in enumerate(ROLES, start=1):
        key = dev_key(kind, i)
        stack.signers[role] = LocalSigner(Account.from_key(key))
        c = stack.config(role)
        c.data_dir.mkdir(parents=True, exist_ok=True)
        import_private_key(c.keystore, key, PASSWORD, scrypt_n=2**10)
    return stack


def write_model(folder: Path, size: int = 4096, seed: int = 0) -> Path:
    """A small safetensors-named model folder with ``size`` bytes of seeded weights."""
    import random

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "test"}')
    (folder / "model.safetensors").write_bytes(random.Random(seed).randbytes(size))
    return folder


def publish_model(stack: Stack, folder: Path, *, price: int = 10**16, role: str = "seller",
                  name: str = "m") -> int:
    """List ``folder`` as ``role`` through the library (what `modex publish` calls)."""
    from node.publish import ListingInfo, publish

    return publish(stack.chain, stack.signers[role], stack.store(role), stack.vault(role), folder,
                   ListingInfo(name=name), price_wei=price).model_id


def buy_raw(stack: Stack, role: str, model_id: int, buyer_key: bytes | None = None) -> int:
    """A purchase with the wallet's derived key (or a given one); returns the purchase id."""
    from node import market

    signer = stack.signers[role]
    if buyer_key is None:
        return market.buy(stack.chain, signer, model_id).purchase_id
    price = stack.chain.call(stack.chain.registry.functions.price(model_id))
    receipt = stack.chain.transact(
        stack.chain.marketplace.functions.buy(model_id, buyer_key, price), signer, value=price)
    return market.purchase_from_receipt(stack.chain, receipt).purchase_id
