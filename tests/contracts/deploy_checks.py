"""Checks shared by the deploy-script and brownie tests: a written deployment is really on the chain,
built from these sources, and wired as node.deploy.suite_plan says (read back through views)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from node import paths
from node.deploy import load_deployment, suite_contracts, validators_config

SCRIPT = paths.ROOT / "scripts" / "deploy.py"


def load_script():
    """scripts/deploy.py as a module (scripts/ is not a package: brownie runs its files by path)."""
    spec = importlib.util.spec_from_file_location("modex_deploy_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_suite_wired(w3, directory: Path) -> dict:
    """Load ``directory/<chainId>.json`` for ``w3``'s chain and check every link by calling views."""
    record = load_deployment(w3, directory)  # chain id matches and every address has code
    c = suite_contracts(w3, record)  # ABI hashes match the compiled sources
    addr = {name: entry["address"] for name, entry in record["contracts"].items()}
    p = record["params"]
    assert c["ModelRegistry"].functions.name().call() == "Modex Model"
    assert c["ModelRegistry"].functions.symbol().call() == "MODEX"
    market = c["Marketplace"].functions
    assert market.registry().call() == addr["ModelRegistry"]
    assert market.validators().call() == addr["Validators"]  # connectValidators ran
    assert market.owner().call() == record["deployer"]
    assert market.feeBps().call() == p["fee_bps"]
    assert market.feeRecipient().call() == p["fee_recipient"]
    assert market.deliveryWindow().call() == p["delivery_window"]
    assert market.validatorShareBps().call() == p["validator_share_bps"]
    validators = c["Validators"].functions
    assert validators.registry().call() == addr["ModelRegistry"]
    assert validators.marketplace().call() == addr["Marketplace"]
    assert market.challengePeriod().call() == p["challenge_period"]
    config = validators.config().call()  # the constructor's Config, in VALIDATORS_CONFIG's order
    assert tuple(config) == tuple(validators_config(p))
    assert c["Votes"].functions.marketplace().call() == addr["Marketplace"]
    assert market.votes().call() == addr["Votes"]  # connectVotes ran
    channels = c["Channels"].functions
    assert (channels.registry().call(), channels.marketplace().call()) == (
        addr["ModelRegistry"],
        addr["Marketplace"],
    )
    return record
