"""Deploy the contract suite, wire it, and read/write ``deployments/<chainId>.json``.

The wiring lives in one place, ``suite_plan(params, deployer)``: plain data that both
``deploy_suite`` (web3 8) and the brownie script (web3 7, its own venv) can follow step by step:

    ModelRegistry()
    Marketplace(registry, deliveryWindow, challengePeriod, feeBps, feeRecipient, validatorShareBps, owner)
    Validators(registry, marketplace, (minStake, quorum, commitPeriod, revealPeriod, unstakeDelay,
               bondBps, requestBond, maxOpenRequests, treasury))
    Marketplace.connectValidators(validators)            # one-time owner call
    Votes(marketplace)
    Marketplace.connectVotes(votes)                      # one-time owner call (votes live in licences)
    Channels(registry, marketplace)                      # pay-per-call channels (fee read at each claim)

A constructor argument ``{"contract": "Name"}`` means "the address of Name deployed earlier".

Signing is pluggable: ``deployer`` is either an address the node signs for (tester/anvil unlocked
accounts) or a signer object with ``.address`` and ``.sign_transaction(tx)`` (an eth-account
``LocalAccount``, a keystore signer), in which case transactions are signed here and sent raw.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address
from eth_utils.exceptions import ValidationError
from web3.exceptions import TimeExhausted, Web3RPCError

from node import paths
from node.compiler import compile_contracts, solc_version
from node.errors import ChainError, ConfigError
from node.onchain import abi_hash
from node.revert import decoded_reverts

log = logging.getLogger(__name__)

STABLECOIN = "MockStablecoin"  # deployed with the suite only when the `stablecoin` parameter is set
SUITE = ("ModelRegistry", "Marketplace", "Validators", "Votes", "Channels")
RECEIPT_TIMEOUT_S = 120  # how long a deployment transaction may take to be mined

# Defaults for a development chain: short rounds, and one minimum-stake validator can settle a round
# (demos and tests). A public deployment passes PUBLIC_PARAMS or its own (contracts/README.md explains
# what each costs an attacker).
DEFAULT_PARAMS = {
    "fee_bps": 250,  # 2.5 % platform fee
    "fee_recipient": None,  # None: the deployer
    "delivery_window": 3600,  # seconds a seller has to deliver before the buyer may refund
    "challenge_period": 300,  # seconds a delivered sale's revenue is held (a dispute refunds the buyer)
    "validator_share_bps": 2000,  # 20 % of the fee goes to a model's verifiers, by weight
    "min_stake": 10**17,  # 0.1 ETH: one unit of validator weight
    "quorum": 1,  # revealed weight (minimum stakes) a round needs to decide
    "commit_period": 20,  # seconds of commits after a round's first commit
    "reveal_period": 20,  # seconds of reveals after commits close
    "unstake_delay": 86400,  # seconds between requestUnstake and unstake
    "bond_bps": 2000,  # a commit bonds 20 % of a minimum stake per unit of weight
    "request_bond": 10**16,  # 0.01 ETH bonded per key request until its seat is released
    "max_open_requests": 16,  # open seats (key requests, attestations) per validator
    "treasury": None,  # None: the fee recipient
    # Also deploy MockStablecoin (a test dollar with an open faucet) and name it in the record: for
    # local chains only (`modex up` sets it); never on a public chain.
    "stablecoin": False,
}

# The documented defaults for a public chain (contracts/README.md, "Economics").
PUBLIC_PARAMS = {
    **DEFAULT_PARAMS,
    "delivery_window": 86400,
    "challenge_period": 7 * 86400,
    "min_stake": 10**18,
    "quorum": 5,
    "commit_period": 86400,
    "reveal_period": 86400,
    "unstake_delay": 7 * 86400,
    "bond_bps": 2000,
    "request_bond": 10**17,
    "max_open_requests": 8,
}


# The fields of the Validators constructor's Config struct (contracts/Validators.sol), in its order.
VALIDATORS_CONFIG = (
    "min_stake",
    "quorum",
    "commit_period",
    "reveal_period",
    "unstake_delay",
    "bond_bps",
    "request_bond",
    "max_open_requests",
    "treasury",
)


def validators_config(params: dict) -> list:
    """The Validators Config tuple for resolved ``params`` (what ``Validators.config()`` returns)."""
    return [params[key] for key in VALIDATORS_CONFIG]


def suite_plan(params: dict, deployer: str) -> list[dict]:
    """The ordered deployment steps for ``params`` (see DEFAULT_PARAMS) as plain data.

    Steps are ``{"deploy": Name, "args": [...]}`` or ``{"call": Name, "function": f, "args": [...]}``;
    an argument ``{"contract": Name}`` stands for that contract's address.
    """
    p = resolve_params(params, deployer)

    def ref(name):
        return {"contract": name}

    return [
        {"deploy": "ModelRegistry", "args": []},
        {
            "deploy": "Marketplace",
            "args": [
                ref("ModelRegistry"),
                p["delivery_window"],
                p["challenge_period"],
                p["fee_bps"],
                p["fee_recipient"],
                p["validator_share_bps"],
                deployer,
            ],
        },
        {
            "deploy": "Validators",
            "args": [
                ref("ModelRegistry"),
                ref("Marketplace"),
                validators_config(p),
            ],
        },
        {"call": "Marketplace", "function": "connectValidators", "args": [ref("Validators")]},
        {"deploy": "Votes", "args": [ref("Marketplace")]},
        {"call": "Marketplace", "function": "connectVotes", "args": [ref("Votes")]},
        # Channels: no parameters of its own; the fee and its recipient are the Marketplace's.
        {"deploy": "Channels", "args": [ref("ModelRegistry"), ref("Marketplace")]},
    ] + ([{"deploy": STABLECOIN, "args": []}] if p["stablecoin"] else [])


def resolve_params(params: dict, deployer: str) -> dict:
    """Fill defaults and check values; raise ConfigError naming the bad one."""
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise ConfigError(
            f"unknown deployment parameter(s) {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}"
        )
    p = {**DEFAULT_PARAMS, **{k: v for k, v in params.items() if v is not None}}
    for key in ("fee_recipient", "treasury"):
        if p[key] not in (None, ""):  # empty: the default, as before
            p[key] = _checked_address(key, p[key])
    p["stablecoin"] = _checked_flag("stablecoin", p["stablecoin"])
    p["fee_recipient"] = p["fee_recipient"] or deployer
    p["treasury"] = p["treasury"] or p["fee_recipient"]
    limits = {
        "fee_bps": (0, 1000),
        "validator_share_bps": (0, 10_000),
        "bond_bps": (1, 10_000),
        "delivery_window": (1, 2**32 - 1),
        "challenge_period": (0, 2**32 - 1),
        "quorum": (1, 2**32 - 1),
        "commit_period": (1, 2**32 - 1),
        "reveal_period": (1, 2**32 - 1),
        "unstake_delay": (0, 2**32 - 1),
        "min_stake": (1, 2**96 - 1),
        "request_bond": (1, 2**96 - 1),
        "max_open_requests": (1, 2**16 - 1),
    }
    for key, (lo, hi) in limits.items():
        value = p[key]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ConfigError(
                f"deployment parameter {key}={value!r} must be an integer in [{lo}, {hi}]"
            )
    seat = (
        p["request_bond"] + p["min_stake"] * p["bond_bps"] // 10_000
    )  # a key request's and a commit's bonds
    if seat > p["min_stake"]:
        raise ConfigError(
            f"request_bond ({p['request_bond']}) plus a commit bond (bond_bps {p['bond_bps']} of min_stake: "
            f"{seat - p['request_bond']}) is more than min_stake ({p['min_stake']}): a validator with the minimum "
            f"stake could never commit; lower request_bond or bond_bps, or raise min_stake"
        )
    return p


def _checked_flag(key: str, value) -> bool:
    """A yes/no parameter: a bool, 0/1 (``--param stablecoin=1``) or the words true/false."""
    words = {"true": True, "false": False, "1": True, "0": False}
    if isinstance(value, str) and value.lower() in words:
        return words[value.lower()]
    if value in (0, 1):
        return bool(value)
    raise ConfigError(
        f"deployment parameter {key}={value!r} must be true or false, e.g. --param {key}=1"
    )


def _checked_address(key: str, value) -> str:
    """``value`` as a checksummed address (any case accepted); ConfigError before anything is sent."""
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
        raise ConfigError(
            f"deployment parameter {key}={value!r} must be an address (0x and 40 hex digits), "
            f"e.g. --param {key}=0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        )
    if int(value, 16) == 0:
        raise ConfigError(
            f"deployment parameter {key} must not be the zero address: leave it out for the default"
        )
    return to_checksum_address(value)


def deploy_suite(w3, deployer, *, artifacts: dict | None = None, **params) -> dict:
    """Deploy and wire the suite (SUITE); return the deployment record (see ``deployment_record``).

    ``params`` are DEFAULT_PARAMS' keys (fee_bps, fee_recipient, delivery_window, challenge_period,
    validator_share_bps, min_stake, quorum, commit_period, reveal_period, unstake_delay, bond_bps,
    request_bond, max_open_requests, treasury, stablecoin). ``deployer`` is an unlocked address or a
    signer (``.address`` + ``.sign_transaction``).
    """
    artifacts = artifacts or compile_contracts()
    missing = [n for n in SUITE if n not in artifacts]
    if missing:
        raise ConfigError(f"compiled artifacts lack {missing}: are contracts/*.sol complete?")
    sender = _address_of(deployer)
    plan = suite_plan(params, sender)
    addresses: dict[str, str] = {}
    block: int | None = None  # of the first deployment
    for step in plan:
        args = [addresses[a["contract"]] if isinstance(a, dict) else a for a in step["args"]]
        try:
            if "deploy" in step:
                name = step["deploy"]
                factory = w3.eth.contract(
                    abi=artifacts[name]["abi"], bytecode=artifacts[name]["bytecode"]
                )
                receipt = send_transaction(
                    w3, deployer, factory.constructor(*args), what=f"deploy {name}"
                )
                addresses[name] = receipt["contractAddress"]
                block = receipt["blockNumber"] if block is None else block
                log.info("deployed %s at %s (gas %d)", name, addresses[name], receipt["gasUsed"])
            else:
                name = step["call"]
                contract = w3.eth.contract(address=addresses[name], abi=artifacts[name]["abi"])
                fn = contract.functions[step["function"]](*args)
                send_transaction(w3, deployer, fn, what=f"{name}.{step['function']}")
        except ChainError as exc:
            if not addresses:
                raise
            # What is on chain already was paid for: say where, as no record is written.
            done = ", ".join(f"{n} at {a}" for n, a in addresses.items())
            raise type(exc)(
                f"{exc}; already deployed, not wired: {done}; deploy the suite again",
                **{**exc.context, "deployed": dict(addresses)},
            ) from exc
    assert block is not None  # suite_plan deploys before it wires
    return deployment_record(
        chain_id=w3.eth.chain_id,
        block=block,
        deployer=sender,
        addresses=addresses,
        artifacts=artifacts,
        params=resolve_params(params, sender),
    )


def send_transaction(w3, sender, call, *, what: str, value: int = 0) -> dict:
    """Build, sign (locally or by the node) and send ``call``; wait for and return the receipt.

    Reverts are decoded by node.revert into ContractRevert before anything is sent.
    """
    address = _address_of(sender)
    try:
        with decoded_reverts():
            if isinstance(sender, str):
                tx_hash = call.transact({"from": address, "value": value})
            else:
                tx = call.build_transaction(
                    {
                        "from": address,
                        "value": value,
                        "nonce": w3.eth.get_transaction_count(address, "pending"),
                    }
                )
                signed = sender.sign_transaction(tx)
                # node.signer's protocol returns the raw bytes; eth-account returns a SignedTransaction
                raw = signed if isinstance(signed, (bytes, bytearray)) else signed.raw_transaction
                tx_hash = w3.eth.send_raw_transaction(raw)
    except (
        Web3RPCError,
        ValidationError,
    ) as exc:  # refused before it ran: funds, nonce, fee (py-evm: ValidationError)
        reason = str(exc)
        error = (getattr(exc, "rpc_response", None) or {}).get("error")
        if isinstance(error, dict) and error.get("message"):
            reason = str(error["message"])  # the node's own words, not the whole JSON-RPC reply
        hint = ""
        if "insufficient funds" in reason.lower() or "cannot afford" in reason.lower():
            reason = (
                reason if isinstance(exc, Web3RPCError) else "insufficient funds for gas"
            )  # py-evm's is bytes
            hint = f"; fund {address} with ETH for gas and deploy again"
        raise ChainError(
            f"{what} was refused by the node: {reason}{hint}", address=address
        ) from None

    try:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
    except TimeExhausted:
        raise ChainError(
            f"{what}: transaction {tx_hash.to_0x_hex()} was not mined within {RECEIPT_TIMEOUT_S} s (a node "
            f"that does not mine, or a fee too low for the network); it may still be mined: look it up "
            f"before sending again",
            tx_hash=tx_hash.to_0x_hex(),
        ) from None
    if receipt["status"] != 1:
        raise ChainError(
            f"{what} failed on chain (transaction {tx_hash.hex()})", receipt=dict(receipt)
        )
    return receipt


def deployment_record(
    *,
    chain_id: int,
    block: int,
    deployer: str,
    addresses: dict[str, str],
    artifacts: dict,
    params: dict | None = None,
) -> dict:
    """The JSON-ready description of a deployment written to deployments/<chainId>.json."""
    source_hashes = {artifacts[n]["sourceHash"] for n in addresses}
    return {
        "chainId": int(chain_id),
        "block": int(block),
        "deployer": deployer,
        "contracts": {
            name: {"address": address, "abiHash": abi_hash(artifacts[name]["abi"])}
            for name, address in addresses.items()
        },
        "compiler": {"solc": solc_version(), "evmVersion": "prague"},
        "sourceHash": source_hashes.pop() if len(source_hashes) == 1 else sorted(source_hashes),
        "params": params or {},
    }


def write_deployment(record: dict, directory: Path | str | None = None) -> Path:
    """Write ``record`` to ``<directory>/<chainId>.json`` atomically; return the path."""
    directory = Path(directory or paths.DEPLOYMENTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{int(record['chainId'])}.json"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_deployment(w3_or_chain_id, directory: Path | str | None = None) -> dict:
    """Read the deployment of this chain; ConfigError if it is missing, malformed or for another chain.

    Given a Web3 instance (not just a chain id) it also checks that each contract has code on the chain,
    which catches a file left over from a dev chain that was restarted.
    """
    w3 = None if isinstance(w3_or_chain_id, int) else w3_or_chain_id
    chain_id = w3_or_chain_id if w3 is None else w3.eth.chain_id
    directory = Path(directory or paths.DEPLOYMENTS_DIR)
    path = directory / f"{chain_id}.json"
    if not path.exists():
        raise ConfigError(
            f"no deployment for chain {chain_id}: {path} does not exist; deploy first "
            f"(`.venv/bin/python scripts/deploy.py --network ...`)",
            path=str(path),
            chain_id=chain_id,
        )
    try:
        record = json.loads(path.read_text())
        recorded = int(record["chainId"])
        contracts = record["contracts"]
        missing = [n for n in SUITE if n not in contracts or "address" not in contracts[n]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a deployment record ({exc}); delete it and deploy again", path=str(path)
        ) from exc
    if recorded != chain_id:
        raise ConfigError(
            f"{path} is for chain {recorded} but the node is on chain {chain_id}: check the RPC URL "
            f"or deploy to this chain",
            path=str(path),
            chain_id=chain_id,
            recorded=recorded,
        )
    if missing:
        raise ConfigError(
            f"{path} lacks contracts {missing}; deploy the suite again", path=str(path)
        )
    if w3 is not None:
        for name in SUITE:
            address = contracts[name]["address"]
            if not w3.eth.get_code(address):
                raise ConfigError(
                    f"{path} names {name} at {address} but chain {chain_id} has no code there (was the "
                    f"chain restarted?): deploy again",
                    path=str(path),
                    contract=name,
                )
    return record


def suite_contracts(w3, record: dict, artifacts: dict | None = None) -> dict[str, Any]:
    """web3 contract objects ``{Name: Contract}`` for a deployment record.

    Raises ConfigError if the compiled ABI differs from the deployed one (sources changed since).
    """
    artifacts = artifacts or compile_contracts()
    out = {}
    for name, entry in record["contracts"].items():
        if name not in artifacts:
            raise ConfigError(f"deployment names {name} but no compiled contract has that name")
        abi = artifacts[name]["abi"]
        if entry.get("abiHash") and entry["abiHash"] != abi_hash(abi):
            raise ConfigError(
                f"{name} at {entry['address']} was deployed from other sources (ABI hash differs): "
                f"redeploy the suite",
                contract=name,
            )
        out[name] = w3.eth.contract(address=entry["address"], abi=abi)
    return out


def _address_of(deployer) -> str:
    if isinstance(deployer, str):
        return deployer
    address = getattr(deployer, "address", None)
    if not address or not callable(getattr(deployer, "sign_transaction", None)):
        raise ConfigError(
            "deployer must be an address unlocked on the node or a signer with .address and "
            ".sign_transaction (e.g. eth_account.Account.from_key(...))"
        )
    return address
