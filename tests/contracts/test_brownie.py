"""`brownie run scripts/deploy.py --network anvil-local` for real: brownie (its own venv, web3 7)
compiles contracts/ and deploys them into an anvil this test starts; web3 8 then reads the wiring back.

The anvil-local network lives in ~/.brownie/network-config.yaml (brownie has no per-project
networks): the test points it at its own anvil's port, adding the network if it is missing.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from deploy_checks import assert_suite_wired
from web3 import Web3

from node import paths
from node.deploy import PUBLIC_PARAMS, resolve_params
from node.devchain import start_anvil

BROWNIE = paths.ROOT / ".venv-brownie" / "bin" / "brownie"
NETWORK = "anvil-local"

pytestmark = [pytest.mark.brownie, pytest.mark.anvil, pytest.mark.slow]


def brownie(*args: str, env: dict, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BROWNIE), *args],
        cwd=paths.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def brownie_env(tmp_path):
    assert BROWNIE.exists(), f"{BROWNIE} missing: run `bash tools/setup.sh`"
    env = dict(os.environ)
    # cmd=anvil must resolve on PATH; the deployment record goes to this test's folder.
    env["PATH"] = f"{paths.NODE_MODULES / '.bin'}{os.pathsep}{env.get('PATH', '')}"
    env["MODEX_DEPLOYMENTS_DIR"] = str(tmp_path)
    env.pop("MODEX_PRIVATE_KEY", None)
    env.pop("MODEX_DEPLOY_PARAMS", None)
    env["MODEX_DEPLOY_DEFAULTS"] = (
        "public"  # brownie passes no arguments: the defaults are chosen here
    )
    (paths.BUILD_DIR).mkdir(exist_ok=True)  # brownie creates build/brownie but not its parent
    # ~/.solcx is per user, not per checkout: point brownie's solc at this checkout's wrapper.
    shim = subprocess.run(
        ["bash", str(paths.ROOT / "tools" / "solc-shim.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shim.returncode == 0, shim.stderr
    return env


def point_network_at(port: int, env: dict) -> None:
    """Make anvil-local reach 127.0.0.1:<port>, whether or not a developer already defined it."""
    settings = ["host=http://127.0.0.1", f"port={port}"]
    modified = brownie("networks", "modify", NETWORK, *settings, env=env)
    if modified.returncode != 0:
        added = brownie(
            "networks", "add", "Development", NETWORK, "cmd=anvil", *settings, "base_fee=0", env=env
        )
        assert added.returncode == 0, added.stdout + added.stderr


def test_brownie_run_deploys_the_wired_suite(brownie_env, tmp_path):
    node = start_anvil()  # default base fee, as a developer's anvil has: the script must cope
    try:
        point_network_at(node.port, brownie_env)
        run = brownie(
            "run", "scripts/deploy.py", "--network", NETWORK, env=brownie_env, timeout=600
        )
        output = run.stdout + run.stderr
        assert run.returncode == 0, output[-4000:]
        assert f"Attached to local RPC client listening at '127.0.0.1:{node.port}'" in output
        w3 = Web3(Web3.HTTPProvider(node.url))
        record = assert_suite_wired(w3, tmp_path)
        assert record["chainId"] == 31337
        assert record["deployer"] == w3.eth.accounts[0]
        # node.deploy.PUBLIC_PARAMS, followed by brownie (and read back from the chain above)
        assert record["params"] == resolve_params(PUBLIC_PARAMS, record["deployer"])
        for name, entry in record["contracts"].items():
            assert f"{name} deployed at: " in output and entry["address"] in output
        assert node.process.poll() is None  # brownie attached to our anvil and left it running
    finally:
        node.stop()
        point_network_at(
            8545, brownie_env
        )  # back to tools/setup.sh's port for a developer's own runs
