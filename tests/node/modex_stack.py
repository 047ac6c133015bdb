"""A whole Modex market for journey tests: chain + deployed suite + store + four wallets.

``make_stack(kind, tmp_path, ...)`` deploys a fresh suite on the embedded chain (kind
"embedded", in-process) or on a running anvil (kind "anvil", with an IPFS daemon URL), writes a
deployment file, creates encrypted keystores for the seller, the buyers and the validator, and
returns a ``Journey`` whose ``cli(role, ...)`` runs ``modex`` as that person (in this process, so
the embedded chain is shared), whose ``modex_cmd(role, ...)`` builds the same command for a
subprocess (anvil only: a subprocess has its own embedded chain), and whose ``node(role)`` is
that person's node.stack.Stack, the parts a command run by them builds.

``settle_validation(chain, model_id, owner=..., validator=..., outcome=...)`` drives one
validation round through the contracts themselves (claim, stake, key request and delivery,
commit, reveal, settle, with time travel over the periods): the one way the buyer, seller and
UI tests get a Verified, Disputed or Metrics disputed model without the validator agent.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from web3.logs import DISCARD

from modex.cli import main
from node import market
from node.chain import Chain, connect
from node.config import Config
from node.deploy import deploy_suite, write_deployment
from node.devchain import ANVIL_MNEMONIC
from node.keystore import import_private_key
from node.keyvault import KeyVault
from node.protocol import ModelStatus, Round, attestation_commitment
from node.publish import ListingInfo, publish
from node.signer import LocalSigner
from node.stack import Stack
from tests.node.cli_results import ok

ROLES = ("seller", "buyer", "validator", "buyer2")
PASSWORD = "journey password"
FAST_VAULT = {"n": 2**10, "r": 8, "p": 1}


def dev_key(kind: str, index: int) -> str:
    if kind == "embedded":
        return "0x" + (index + 1).to_bytes(32, "big").hex()
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key.hex()


@dataclass
class Journey:
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
        return Config(
            data_dir=self.data_dir(role),
            chain=self.chain_url,
            ipfs=self.ipfs,
            store_dir=self.store_dir,
            deployment_file=self.deployment,
            poll_interval=0.2,
            rpc_retries=2,
            rpc_timeout=5.0,
        )

    def node(self, role: str = "seller") -> Stack:
        """``role``'s node parts over ``config(role)``, sharing this journey's chain client; the
        key vault is opened with a cheap KDF (its cost is not under test)."""
        return Stack(
            self.config(role),
            chain=self.chain,
            signer=self.signers.get(role),
            vault=self.vault(role),
            password=PASSWORD,
        )

    def store(self, role: str = "seller"):
        """Each person's store. Embedded: ONE shared folder stands in for the IPFS network."""
        return self.node(role).store

    def vault(self, role: str = "seller") -> KeyVault:
        return KeyVault(self.config(role).keyvault, PASSWORD, scrypt_params=FAST_VAULT)

    def args(self, role: str) -> list[str]:
        c = self.config(role)
        return [
            "--data-dir",
            str(c.data_dir),
            "--chain",
            self.chain_url,
            "--ipfs",
            c.ipfs,
            "--deployment",
            str(self.deployment),
        ]

    def env(self) -> dict:
        return {
            **os.environ,
            "MODEX_PASSWORD": PASSWORD,
            "MODEX_STORE_DIR": str(self.store_dir),
            "MODEX_RPC_RETRIES": "2",
            "MODEX_RPC_TIMEOUT": "5",
            "MODEX_POLL_INTERVAL": "0.2",
        }

    @property
    def store_dir(self) -> Path:
        return self.root / "ipfs"

    def cli(self, role: str, command: str, *argv: str) -> tuple[int, str, str]:
        """Run ``modex COMMAND ... --<node options of ROLE>`` in-process; (code, stdout, stderr)."""
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
        return [sys.executable, "-m", "modex", command, *argv, *self.args(role)]

    def time_travel(self, seconds: int) -> None:
        time_travel(self.chain, seconds)


def time_travel(chain: Chain, seconds: int) -> None:
    """Move the chain's clock ``seconds`` ahead and mine a block there (embedded: eth-tester's
    time_travel; a JSON-RPC dev node: evm_increaseTime + evm_mine)."""
    w3 = chain.w3
    if chain.endpoint == "embedded":
        now = w3.eth.get_block("latest")["timestamp"]
        w3.provider.ethereum_tester.time_travel(now + seconds)
    else:
        w3.provider.make_request("evm_increaseTime", [seconds])
        w3.provider.make_request("evm_mine", [])


def past(stack, timestamp: int) -> None:
    """Move the chain's clock past ``timestamp``."""
    now = stack.chain.get_block("latest")["timestamp"]
    if now <= timestamp:
        time_travel(stack.chain, timestamp - now + 1)


def validate_to_the_end(stack, model_id: int) -> str:
    """`modex validate --once` per step, the seller's `modex worker --once` delivering the key
    and the clock moved over each period, until the validator settled the model's round and
    released its seat; all the validator printed."""

    def round_of() -> Round:
        return Round.from_call(stack.chain.call(stack.chain.validators.functions.roundOf(model_id)))

    said = ok(stack.cli("validator", "validate", "--once"))  # stakes, asks for the key
    assert "asked for its key" in said
    assert "delivered 1 key(s)" in ok(stack.cli("seller", "worker", "--once"))
    said += ok(stack.cli("validator", "validate", "--once"))  # fetch, evaluate, commit
    past(stack, round_of().commit_end)
    said += ok(stack.cli("validator", "validate", "--once"))  # reveal
    past(stack, round_of().reveal_end)
    return said + ok(stack.cli("validator", "validate", "--once"))  # settle, release


def _send(chain: Chain, fn, account, *, value: int = 0):
    """``account`` is a Signer (signed here) or an address the node unlocks (dev accounts)."""
    if isinstance(account, str):
        return chain.transact_unlocked(fn, account, value=value)
    return chain.transact(fn, account, value=value)


def _address(account) -> str:
    return account if isinstance(account, str) else account.address


CLAIMED_DIGEST = b"\xc1" * 32  # the seller's claim settle_validation makes when there is none
OTHER_DIGEST = b"\xd1" * 32  # a work digest that is not the claim
OTHER_HASH = b"\x99" * 32  # a model hash that is not the listed one


def settle_validation(
    chain: Chain, model_id: int, *, owner, validator, outcome: ModelStatus = ModelStatus.VERIFIED
) -> ModelStatus:
    """Take ``model_id`` through one validation round to ``outcome`` with one validator, through
    the contracts (a dev deployment: quorum 1): the owner claims a work digest unless one is
    claimed; the validator stakes the minimum unless it is active, asks for the key, which the
    owner delivers, commits to (listed hash, claim) for Verified, (listed hash, another digest)
    for Metrics disputed or (another hash, another digest) for Disputed, reveals after the commit
    period and settles after the reveal period (time travel over both). ``owner`` and
    ``validator`` are Signers or unlocked addresses. Returns the status the model settled as."""
    registry, marketplace, validators = (
        chain.registry.functions,
        chain.marketplace.functions,
        chain.validators.functions,
    )
    claimed = bytes(chain.call(registry.claimedWorkDigest(model_id)))
    if claimed == b"\x00" * 32:
        _send(chain, registry.claimMetrics(model_id, CLAIMED_DIGEST), owner)
        claimed = CLAIMED_DIGEST
    listed = bytes(chain.call(registry.modelHash(model_id)))
    observed, digest = {
        ModelStatus.VERIFIED: (listed, claimed),
        ModelStatus.METRICS_DISPUTED: (listed, OTHER_DIGEST),
        ModelStatus.DISPUTED: (OTHER_HASH, OTHER_DIGEST),
    }[outcome]
    who = _address(validator)
    if not chain.call(validators.isActiveValidator(who)):
        _send(chain, validators.stake(), validator, value=chain.call(validators.minStake()))
    receipt = _send(chain, marketplace.requestValidatorKey(model_id, b"\x0b" * 32), validator)
    request = chain.marketplace.events.Purchased().process_receipt(receipt, errors=DISCARD)
    _send(chain, marketplace.deliverKey(request[0]["args"]["purchaseId"], who, b"\x0c" * 80), owner)
    salt = os.urandom(32)
    _send(
        chain,
        validators.commitAttestation(
            model_id,
            attestation_commitment(
                chain.chain_id, chain.validators.address, model_id, who, observed, digest, salt
            ),
        ),
        validator,
    )
    now = chain.get_block("latest")["timestamp"]
    round_ = Round.from_call(chain.call(validators.roundOf(model_id)))
    time_travel(chain, round_.commit_end - now + 1)
    _send(chain, validators.revealAttestation(model_id, observed, digest, salt), validator)
    time_travel(chain, round_.reveal_end - chain.get_block("latest")["timestamp"] + 1)
    _send(chain, validators.settle(model_id), validator)
    return ModelStatus(chain.call(validators.status(model_id)))


def make_stack(
    kind: str, root: Path, *, anvil_url: str | None = None, ipfs: str = "embedded", **params
) -> Journey:
    chain_url = "embedded" if kind == "embedded" else anvil_url
    w3 = connect(chain_url)
    record = deploy_suite(w3, w3.eth.accounts[0], **params)  # a dev account the node unlocks
    deployment = write_deployment(record, root / "deployments")
    deployer = Config(data_dir=root / "deployer", chain=chain_url, deployment_file=deployment)
    stack = Journey(kind, root, chain_url, ipfs, deployment, Stack(deployer).chain)
    for i, role in enumerate(ROLES, start=1):
        key = dev_key(kind, i)
        stack.signers[role] = LocalSigner(Account.from_key(key))
        c = stack.config(role)
        c.data_dir.mkdir(parents=True, exist_ok=True)
        import_private_key(c.keystore, key, PASSWORD, scrypt_n=2**10)
    return stack


def write_model(folder: Path, size: int = 4096, seed: int = 0) -> Path:
    """A small safetensors-named model folder with ``size`` bytes of seeded weights."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "test"}')
    (folder / "model.safetensors").write_bytes(random.Random(seed).randbytes(size))
    return folder


def publish_model(
    stack: Journey, folder: Path, *, price: int = 10**16, role: str = "seller", name: str = "m"
) -> int:
    """List ``folder`` as ``role`` through the library (what `modex publish` calls)."""
    return publish(
        stack.chain,
        stack.signers[role],
        stack.store(role),
        stack.vault(role),
        folder,
        ListingInfo(name=name),
        price_wei=price,
    ).model_id


def buy_raw(stack: Journey, role: str, model_id: int, buyer_key: bytes | None = None) -> int:
    """A purchase with the wallet's derived key (or a given one); returns the purchase id."""
    signer = stack.signers[role]
    if buyer_key is None:
        return market.buy(stack.chain, signer, model_id).purchase_id
    price = stack.chain.call(stack.chain.registry.functions.price(model_id))
    receipt = stack.chain.transact(
        stack.chain.marketplace.functions.buy(model_id, buyer_key, price), signer, value=price
    )
    return market.purchase_from_receipt(stack.chain, receipt).purchase_id


def licence(stack: Journey, role: str, model_id: int) -> int:
    """``role`` buys ``model_id`` with its derived key and the seller delivers at once (a
    stand-in key: no worker pass), so ``role`` holds a licence (Marketplace.hasAccess)."""
    purchase_id = buy_raw(stack, role, model_id)
    stack.chain.transact(
        stack.chain.marketplace.functions.deliverKey(
            purchase_id, stack.signers[role].address, b"\x01" * 80
        ),
        stack.signers["seller"],
    )
    return purchase_id
