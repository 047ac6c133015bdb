"""scripts/deploy.py through web3.py: embedded and anvil deployments read back from the chain, and the
bad inputs a person meets (stale record of another chain, nothing listening, typos) as one clear line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from deploy_checks import SCRIPT, assert_suite_wired, load_script
from eth_account import Account
from web3 import Web3

from node import paths
from node.compiler import compile_contracts
from node.deploy import PUBLIC_PARAMS, resolve_params
from node.devchain import free_port, start_anvil
from node.keystore import import_private_key
from node.onchain import abi_hash

NAMES = ("ModelRegistry", "Marketplace", "Validators", "Votes", "Channels")


@pytest.fixture(scope="module")
def script():
    return load_script()


def test_embedded_deploy_is_wired_and_recorded(script, tmp_path):
    w3 = script.connect("embedded")
    record, path = script.deploy_with_web3(w3, out=tmp_path, params={"quorum": 2, "fee_bps": 300})
    assert path == tmp_path / f"{w3.eth.chain_id}.json"
    assert json.loads(path.read_text()) == record
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    wired = assert_suite_wired(w3, tmp_path)
    assert (wired["params"]["quorum"], wired["params"]["fee_bps"]) == (2, 300)
    assert wired["deployer"] == w3.eth.accounts[0]
    compiled = compile_contracts()
    assert {n: e["abiHash"] for n, e in record["contracts"].items()} == {
        n: abi_hash(compiled[n]["abi"]) for n in NAMES
    }
    assert record["compiler"] == {"solc": "0.8.30", "evmVersion": "prague"}
    assert record["sourceHash"] == compiled["Marketplace"]["sourceHash"]


def test_cli_prints_every_address(script, tmp_path, capsys):
    assert (
        script.main(["--network", "embedded", "--out", str(tmp_path), "--param", "quorum=3"]) == 0
    )
    out = capsys.readouterr().out
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["params"]["quorum"] == 3
    for name in NAMES:
        assert f"{name:<14} {record['contracts'][name]['address']}" in out
    assert f"wrote {tmp_path / (str(record['chainId']) + '.json')}" in out


@pytest.mark.parametrize("how", ["--public-defaults", "MODEX_DEPLOY_DEFAULTS"])
def test_public_defaults_are_deployed_and_params_override_them(script, tmp_path, monkeypatch, how):
    """--public-defaults (or MODEX_DEPLOY_DEFAULTS=public, which the brownie path reads too) deploys
    node.deploy.PUBLIC_PARAMS; --param and MODEX_DEPLOY_PARAMS still set any of them over it."""
    argv = ["--network", "embedded", "--out", str(tmp_path), "--param", "quorum=7"]
    if how == "--public-defaults":
        argv.append("--public-defaults")
    else:
        monkeypatch.setenv("MODEX_DEPLOY_DEFAULTS", "public")
    monkeypatch.setenv("MODEX_DEPLOY_PARAMS", '{"commit_period": 3600}')
    assert script.main(argv) == 0
    w3 = script.connect("embedded")  # a fresh embedded chain: read the record, not the (gone) chain
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    deployer = record["deployer"]
    assert record["params"] == resolve_params(
        {**PUBLIC_PARAMS, "quorum": 7, "commit_period": 3600}, deployer
    )
    assert (record["params"]["min_stake"], record["params"]["challenge_period"]) == (
        10**18,
        7 * 86400,
    )
    assert w3.eth.chain_id == record["chainId"]


def test_public_defaults_are_wired_on_chain(script, tmp_path):
    w3 = script.connect("embedded")
    record, _ = script.deploy_with_web3(w3, out=tmp_path, params=script._defaults("public"))
    wired = assert_suite_wired(w3, tmp_path)  # every parameter read back through the views
    assert wired["params"] == resolve_params(PUBLIC_PARAMS, record["deployer"])


@pytest.mark.anvil
def test_anvil_deploy_from_the_unlocked_account(script, anvil, tmp_path, capsys):
    assert script.main(["--network", "anvil", "--rpc-url", anvil.url, "--out", str(tmp_path)]) == 0
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    record = assert_suite_wired(w3, tmp_path)
    assert record["deployer"] == w3.eth.accounts[0]
    assert record["chainId"] == 31337
    assert record["contracts"]["Votes"]["address"] in capsys.readouterr().out


@pytest.mark.anvil
@pytest.mark.parametrize("how", ["MODEX_PRIVATE_KEY", "--keystore"])
def test_anvil_deploy_signed_locally(script, anvil, tmp_path, monkeypatch, how):
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    fresh = Account.create()  # a key the node does not hold: every transaction is signed here
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": fresh.address, "value": 10**18})
    )
    argv = ["--network", anvil.url, "--out", str(tmp_path / "out")]
    if how == "--keystore":
        keyfile = tmp_path / "deployer.json"
        import_private_key(keyfile, fresh.key.hex(), "correct horse", scrypt_n=2**10)
        monkeypatch.setenv("MODEX_PASSWORD", "correct horse")
        argv += ["--keystore", str(keyfile)]
    else:
        monkeypatch.setenv("MODEX_PRIVATE_KEY", fresh.key.hex())
    assert script.main(argv) == 0
    record = assert_suite_wired(w3, tmp_path / "out")
    assert record["deployer"] == fresh.address
    assert (
        w3.eth.get_transaction_count(fresh.address) == 7
    )  # five deployments + connectValidators + connectVotes


def test_wrong_keystore_password_is_refused_before_anything_is_sent(
    script, tmp_path, capsys, monkeypatch
):
    keyfile = tmp_path / "deployer.json"
    import_private_key(keyfile, Account.create().key.hex(), "correct horse", scrypt_n=2**10)
    monkeypatch.setenv("MODEX_PASSWORD", "battery staple")
    out = tmp_path / "out"
    assert (
        script.main(["--network", "embedded", "--keystore", str(keyfile), "--out", str(out)]) == 1
    )
    err = capsys.readouterr().err
    assert f"wrong password for keystore {keyfile}" in err and err.count("\n") == 1
    assert "battery" not in err and not out.exists()


def test_existing_record_of_another_chain_is_refused(script, tmp_path, capsys):
    chain_id = script.connect("embedded").eth.chain_id
    stale = tmp_path / f"{chain_id}.json"
    stale.write_text(json.dumps({"chainId": 1, "block": 1, "contracts": {}}))
    before = stale.read_bytes()
    assert script.main(["--network", "embedded", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert str(stale) in err and "chain 1" in err and f"chain {chain_id}" in err
    assert stale.read_bytes() == before  # nothing deployed, nothing rewritten


def test_unreachable_rpc_exits_nonzero_naming_the_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # bound then released: nothing listens there
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--network",
            "anvil",
            "--rpc-url",
            url,
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=paths.ROOT,
        check=False,
    )
    assert run.returncode == 1, run.stderr
    assert f"cannot reach an Ethereum JSON-RPC node at {url}" in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--network", "mainnet"], {}, "unknown --network 'mainnet'"),
        (["--network", "embedded", "--param", "quorum"], {}, "--param 'quorum' is not KEY=VALUE"),
        (
            ["--network", "embedded", "--param", "fees=1"],
            {},
            "unknown deployment parameter(s) ['fees']",
        ),
        (
            ["--network", "embedded", "--param", "fee_bps=5000"],
            {},
            "fee_bps=5000 must be an integer in [0, 1000]",
        ),
        (
            ["--network", "embedded", "--param", "commit_period=0"],
            {},
            "commit_period=0 must be an integer in [1, ",
        ),
        (
            ["--network", "embedded", "--public-defaults", "--param", "max_open_requests=0"],
            {},
            "max_open_requests=0 must be an integer in [1, 65535]",
        ),
        (
            [
                "--network",
                "embedded",
                "--public-defaults",
                "--param",
                "request_bond=900000000000000000",
            ],
            {},
            "a validator with the minimum stake could never commit",
        ),
        (
            ["--network", "embedded"],
            {"MODEX_DEPLOY_DEFAULTS": "mainnet"},
            "MODEX_DEPLOY_DEFAULTS='mainnet' is not one of dev, public",
        ),
        (
            ["--network", "embedded"],
            {"MODEX_DEPLOY_PARAMS": "{quorum: 2"},
            "MODEX_DEPLOY_PARAMS is not JSON",
        ),
        (["--network", "embedded"], {"MODEX_PRIVATE_KEY": "0x1234"}, "not a valid private key"),
        (
            ["--network", "embedded", "--param", "quorum=\u00b2"],
            {},
            "quorum='\u00b2' must be an integer",
        ),
        (
            ["--network", "embedded", "--param", "fee_recipient=alice"],
            {},
            "deployment parameter fee_recipient='alice' must be an address (0x and 40 hex digits)",
        ),
        (
            ["--network", "embedded", "--param", "treasury=0x" + "0" * 40],
            {},
            "deployment parameter treasury must not be the zero address",
        ),
        (
            ["--network", "embedded"],
            {"MODEX_DEPLOY_PARAMS": '{"fee_recipient": 5}'},
            "deployment parameter fee_recipient=5 must be an address",
        ),
    ],
)
def test_bad_input_is_one_clear_line(script, tmp_path, capsys, monkeypatch, argv, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert script.main([*argv, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert "1234" not in err  # a key, even a wrong one, is never echoed
    assert not any(tmp_path.iterdir())


def test_address_parameters_in_any_case_are_deployed_checksummed(script, tmp_path):
    """A lower-case address (what most tools print) is accepted and recorded in its checksum form."""
    w3 = script.connect("embedded")
    recipient, treasury = w3.eth.accounts[1], w3.eth.accounts[2]
    record, _ = script.deploy_with_web3(
        w3,
        out=tmp_path,
        params={
            "fee_recipient": recipient.lower(),
            "treasury": treasury.upper().replace("0X", "0x"),
        },
    )
    assert (record["params"]["fee_recipient"], record["params"]["treasury"]) == (
        recipient,
        treasury,
    )
    assert_suite_wired(w3, tmp_path)


def test_unwritable_out_folder_is_refused_before_anything_is_sent(script, tmp_path, capsys):
    """A record that cannot be written would lose the addresses of a deployment already paid for."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert script.main(["--network", "embedded", "--out", str(blocker / "deployments")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert f"cannot write deployment records to {blocker / 'deployments'}" in err and "--out" in err
    w3 = script.connect("embedded")
    start = w3.eth.block_number
    with pytest.raises(script.ConfigError):
        script.deploy_with_web3(w3, out=blocker / "deployments")
    assert w3.eth.block_number == start  # no transaction was sent


def test_record_write_failing_after_deploy_still_prints_the_addresses(
    script, tmp_path, capsys, monkeypatch
):
    """If writing the record fails once the suite is on chain, the addresses still reach the terminal."""

    def fail(record, directory=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(script.suite, "write_deployment", fail)
    assert script.main(["--network", "embedded", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "No space left on device" in captured.err and "Traceback" not in captured.err
    record = json.loads(captured.out)
    assert set(record["contracts"]) == set(NAMES)
    assert all(Web3.is_checksum_address(e["address"]) for e in record["contracts"].values())


@pytest.mark.anvil
def test_a_transaction_never_mined_is_one_clear_line(script, tmp_path, capsys, monkeypatch):
    """A node that does not mine (stalled, or a fee too low) was web3's TimeExhausted traceback."""
    node = start_anvil(extra_args=["--no-mining"])
    try:
        monkeypatch.setattr(script.suite, "RECEIPT_TIMEOUT_S", 1)
        assert (
            script.main(
                ["--network", "anvil", "--rpc-url", node.url, "--out", str(tmp_path / "out")]
            )
            == 1
        )
    finally:
        node.stop()
    err = capsys.readouterr().err
    assert err.startswith("error: deploy ModelRegistry: transaction 0x") and err.count("\n") == 1, (
        err
    )
    assert "was not mined within 1 s" in err and "Traceback" not in err
    assert not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("network", ["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def test_an_unfunded_deployer_is_told_to_fund_it(script, tmp_path, capsys, monkeypatch, network):
    """The commonest first-deployment mistake on a real network was a Web3RPCError (or py-evm
    ValidationError) traceback."""
    empty = Account.create()
    monkeypatch.setenv("MODEX_PRIVATE_KEY", empty.key.hex())
    node = start_anvil() if network == "anvil" else None
    try:
        argv = ["--network", "embedded"] if node is None else ["--network", node.url]
        assert script.main([*argv, "--out", str(tmp_path)]) == 1
    finally:
        if node is not None:
            node.stop()
    err = capsys.readouterr().err
    assert (
        err.startswith("error: deploy ModelRegistry was refused by the node")
        and err.count("\n") == 1
    ), err
    assert f"fund {empty.address} with ETH for gas" in err and "Traceback" not in err
    assert empty.key.hex()[2:] not in err.lower()
    assert not any(tmp_path.iterdir())


def test_a_missing_keystore_is_named_before_any_password_is_asked(
    script, tmp_path, capsys, monkeypatch
):
    """Asking for a password first hid the real problem ('no password ...' off a terminal)."""
    monkeypatch.delenv("MODEX_PASSWORD", raising=False)
    missing = tmp_path / "wallet.json"
    assert (
        script.main(
            ["--network", "embedded", "--keystore", str(missing), "--out", str(tmp_path / "out")]
        )
        == 1
    )
    captured = capsys.readouterr()
    assert (
        captured.err
        == f"error: no keystore file at {missing}: pass the path of an encrypted JSON keyfile "
        f"(`modex account new` or `modex account import` makes one)\n"
    )
    assert "password" not in captured.out.lower() and not (tmp_path / "out").exists()


def test_a_deployment_failing_midway_names_what_is_already_on_chain(
    script, tmp_path, capsys, monkeypatch
):
    """Contracts deployed (and paid for) before a failing step are named, with their addresses."""
    real, calls = script.suite.send_transaction, []

    def failing_third(w3, sender, call, *, what, value=0):
        calls.append(what)
        if len(calls) == 3:
            raise script.ChainError(f"{what} failed on chain (transaction 0xabc)")
        return real(w3, sender, call, what=what, value=value)

    monkeypatch.setattr(script.suite, "send_transaction", failing_third)
    w3 = script.connect("embedded")
    with pytest.raises(script.ChainError) as info:
        script.deploy_with_web3(w3, out=tmp_path)
    message = str(info.value)
    assert message.startswith(
        "deploy Validators failed on chain (transaction 0xabc); already deployed, not wired: "
    )
    named = dict(
        part.split(" at ") for part in message.split("not wired: ")[1].split(";")[0].split(", ")
    )
    assert list(named) == ["ModelRegistry", "Marketplace"]
    assert all(w3.eth.get_code(address) for address in named.values())
    assert not any(tmp_path.iterdir())


def test_the_stablecoin_is_deployed_and_recorded_only_when_asked(script, tmp_path):
    """`--param stablecoin=1` (what `modex up` asks on its local chain) adds MockStablecoin to the
    deployment and its record; by default, and at the public defaults, there is none."""
    assert resolve_params({}, "0x" + "11" * 20)["stablecoin"] is False
    assert PUBLIC_PARAMS["stablecoin"] is False
    w3 = script.connect("embedded")
    record, _ = script.deploy_with_web3(w3, out=tmp_path, params={"stablecoin": 1})
    assert record["params"]["stablecoin"] is True
    assert set(record["contracts"]) == {*NAMES, "MockStablecoin"}
    coin = w3.eth.contract(
        address=record["contracts"]["MockStablecoin"]["address"],
        abi=compile_contracts()["MockStablecoin"]["abi"],
    )
    assert (coin.functions.symbol().call(), coin.functions.decimals().call()) == ("mUSD", 6)
    assert_suite_wired(w3, tmp_path)
    plain, _ = script.deploy_with_web3(w3, out=tmp_path / "plain", params={"stablecoin": "false"})
    assert set(plain["contracts"]) == set(NAMES)
    with pytest.raises(script.ConfigError, match="stablecoin='maybe' must be true or false"):
        script.deploy_with_web3(w3, out=tmp_path / "bad", params={"stablecoin": "maybe"})
