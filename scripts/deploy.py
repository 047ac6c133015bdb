"""Deploy the Modex contract suite, wire it, and write ``deployments/<chainId>.json``.

One script, three ways, one wiring (``node.deploy.suite_plan``):

    .venv/bin/python scripts/deploy.py --network embedded            # in-process py-evm chain
    .venv/bin/python scripts/deploy.py --network anvil [--rpc-url http://127.0.0.1:8545]
    .venv/bin/python scripts/deploy.py --network https://rpc.example.org --keystore wallet.json
    PATH=node_modules/.bin:$PATH .venv-brownie/bin/brownie run scripts/deploy.py --network anvil-local

Who signs: ``--keystore FILE`` (password from $MODEX_PASSWORD or the terminal), else the key in
$MODEX_PRIVATE_KEY, else the node's first unlocked account (anvil and the embedded chain have
funded ones). Under brownie: $MODEX_PRIVATE_KEY, else brownie's ``accounts[0]``.
Parameters start from the development defaults (node.deploy.DEFAULT_PARAMS: one minimum stake
settles a round in 40 s, for demos and tests) or, with ``--public-defaults`` ($MODEX_DEPLOY_DEFAULTS=
public, for both ways), from the documented public-chain defaults (node.deploy.PUBLIC_PARAMS;
contracts/README.md, "Economics", says what each costs an attacker). Any of them is then set with
``--param KEY=VALUE`` (repeatable) or, for both ways, $MODEX_DEPLOY_PARAMS as a JSON object.
$MODEX_DEPLOYMENTS_DIR (or ``--out``) changes where the record is written.

brownie 1.22 pins web3 7, so under brownie only the parts of node.deploy that send nothing are used (the
plan, parameter checks and the record format); contracts are deployed with brownie's own
ContractContainers from brownie's compilation of contracts/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file (python scripts/deploy.py, brownie run), not a module
    sys.path.insert(0, str(ROOT))

from node import deploy as suite  # under brownie its imports resolve in brownie's web3 7
from node import paths
from node.errors import ChainError, ConfigError, ModexError

log = logging.getLogger("modex.deploy")

DEFAULT_RPC_URL = "http://127.0.0.1:8545"
PRIVATE_KEY_ENV = "MODEX_PRIVATE_KEY"
PARAMS_ENV = "MODEX_DEPLOY_PARAMS"
DEFAULTS_ENV = "MODEX_DEPLOY_DEFAULTS"  # "dev" (the default) or "public"
DEFAULTS = {"dev": suite.DEFAULT_PARAMS, "public": suite.PUBLIC_PARAMS}
DEPLOYMENTS_DIR_ENV = "MODEX_DEPLOYMENTS_DIR"
RPC_TIMEOUT_S = 10


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python scripts/deploy.py ...`` and for ``brownie run`` (no arguments)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    under_brownie = _brownie_connected()
    try:
        if under_brownie:
            record, path = deploy_with_brownie()
        else:
            args = parse_args(argv)
            if args.verbose:
                logging.getLogger().setLevel(logging.INFO)
            params = {
                **_defaults("public" if args.public_defaults else None),
                **_env_params(),
                **_cli_params(args.param),
            }
            w3 = connect(args.network, args.rpc_url)
            record, path = deploy_with_web3(w3, keystore=args.keystore, out=args.out, params=params)
    except ModexError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if under_brownie:
            sys.exit(
                1
            )  # `brownie run` ignores main's return value; its exit status must still say it failed
        return 1
    print_record(record, path)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/deploy.py",
        description="Deploy and wire the Modex contracts; write deployments/<chainId>.json.",
        epilog=_defaults_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--network",
        required=True,
        help="'embedded' (in-process chain), 'anvil' (a running anvil at --rpc-url) or an http(s):// RPC URL",
    )
    parser.add_argument(
        "--rpc-url", default=DEFAULT_RPC_URL, help=f"anvil's URL (default {DEFAULT_RPC_URL})"
    )
    parser.add_argument(
        "--keystore", type=Path, help="encrypted JSON keyfile of the deployer ($MODEX_PASSWORD)"
    )
    parser.add_argument(
        "--public-defaults",
        action="store_true",
        help=f"start from the public-chain defaults instead of the development ones (also {DEFAULTS_ENV}=public)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="deployment parameter, repeatable, over the defaults (keys and defaults below)",
    )
    parser.add_argument("--out", type=Path, help="folder for <chainId>.json (default deployments/)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each deployment step")
    return parser.parse_args(argv)


def deploy_with_web3(
    w3, *, keystore: Path | None = None, out: Path | None = None, params: dict | None = None
) -> tuple[dict, Path]:
    """Deploy through web3.py (node.deploy.deploy_suite); return the record and the file written."""
    out = _deployments_dir(out)
    deployer = choose_deployer(w3, keystore)
    check_existing(w3.eth.chain_id, out)
    check_writable(out)
    record = suite.deploy_suite(w3, deployer, **(params or {}))
    return record, write_or_print(record, out)


def connect(network: str, rpc_url: str = DEFAULT_RPC_URL):
    """A Web3 for 'embedded', 'anvil' (at ``rpc_url``) or an http(s) URL; ChainError if unreachable."""
    from web3 import Web3

    if network == "embedded":
        from web3 import EthereumTesterProvider

        return Web3(EthereumTesterProvider())
    if network == "anvil":
        url = rpc_url
    elif network.startswith(("http://", "https://")):
        url = network
    else:
        raise ConfigError(
            f"unknown --network {network!r}: use 'embedded', 'anvil' (with --rpc-url) or an http(s):// RPC URL"
        )
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": RPC_TIMEOUT_S}))
    try:
        w3.eth.chain_id  # noqa: B018 - one round trip tells whether anything answers JSON-RPC there
    except Exception as exc:  # noqa: BLE001 - refused, timeout, DNS, not JSON-RPC: all "not reachable"
        raise ChainError(
            f"cannot reach an Ethereum JSON-RPC node at {url} ({type(exc).__name__}): start anvil "
            f"(node_modules/.bin/anvil) or pass the right --rpc-url / --network URL",
            url=url,
        ) from None
    return w3


def choose_deployer(w3, keystore: Path | None):
    """--keystore, else $MODEX_PRIVATE_KEY, else the node's first unlocked account."""
    if keystore is not None:
        from node.keystore import load_signer, read_password

        if not keystore.is_file():  # said before a password is asked for a file that is not there
            raise ConfigError(
                f"no keystore file at {keystore}: pass the path of an encrypted JSON keyfile "
                f"(`modex account new` or `modex account import` makes one)"
            )
        return load_signer(keystore, read_password())
    key = os.environ.get(PRIVATE_KEY_ENV)
    if key:
        from node.signer import signer_from_key

        return signer_from_key(key.strip())
    accounts = w3.eth.accounts
    if not accounts:
        raise ConfigError(
            f"the node has no unlocked account to deploy from: pass --keystore FILE or set {PRIVATE_KEY_ENV}"
        )
    return accounts[0]


def check_existing(chain_id: int, out: Path) -> None:
    """An existing record for this chain id must really be one (else ConfigError); it is then replaced."""
    if (out / f"{chain_id}.json").exists():
        previous = suite.load_deployment(chain_id, out)
        log.warning(
            "replacing the deployment of chain %d made at block %s", chain_id, previous.get("block")
        )


def deploy_with_brownie(params: dict | None = None, out: Path | None = None) -> tuple[dict, Path]:
    """Deploy with brownie's ContractContainers on brownie's active network, following suite_plan."""
    from brownie import accounts, chain, network, project

    from node.compiler import compile_contracts

    loaded = project.get_loaded_projects()
    if not loaded:
        raise ConfigError(
            "brownie has no project loaded: run `brownie run` from the repository root"
        )
    containers = loaded[0]
    params = {**_defaults(), **_env_params(), **(params or {})}
    out = _deployments_dir(out)
    if not network.priority_fee():
        # brownie's development defaults send gas price 0, which anvil refuses unless base_fee=0.
        network.priority_fee("1 gwei")
    key = os.environ.get(PRIVATE_KEY_ENV)
    account = accounts.add(key.strip()) if key else accounts[0]
    check_existing(chain.id, out)
    check_writable(out)

    artifacts = (
        compile_contracts()
    )  # node.compiler's artifacts give the record its ABI and source hashes
    deployed: dict = {}
    block = None
    for step in suite.suite_plan(params, account.address):
        args = [deployed[a["contract"]].address if isinstance(a, dict) else a for a in step["args"]]
        if "deploy" in step:
            name = step["deploy"]
            if _abi_entries(containers[name].abi) != _abi_entries(artifacts[name]["abi"]):
                raise ConfigError(
                    f"brownie's build of {name} has another ABI than node.compiler's: delete build/ and run again"
                )
            deployed[name] = containers[name].deploy(*args, {"from": account})
            block = deployed[name].tx.block_number if block is None else block
        else:
            tx = getattr(deployed[step["call"]], step["function"])(*args, {"from": account})
            if tx.status != 1:
                raise ChainError(
                    f"{step['call']}.{step['function']} failed (transaction {tx.txid})"
                )
    record = suite.deployment_record(
        chain_id=chain.id,
        block=block,
        deployer=account.address,
        addresses={name: c.address for name, c in deployed.items()},
        artifacts=artifacts,
        params=suite.resolve_params(params, account.address),
    )
    return record, write_or_print(record, out)


def check_writable(out: Path) -> None:
    """The record's folder must take a file before anything is deployed: a record that cannot be
    written afterwards would leave a suite paid for on chain with its addresses only in the history."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot write deployment records to {out} ({exc.strerror or exc}): pass --out a writable folder "
            f"(or set {DEPLOYMENTS_DIR_ENV})"
        ) from None


def write_or_print(record: dict, out: Path) -> Path:
    """Write the record; if that fails now that the suite is deployed, print it (stdout) and say so."""
    try:
        return suite.write_deployment(record, out)
    except OSError as exc:
        print(json.dumps(record, indent=2, sort_keys=True))
        raise ConfigError(
            f"the suite is deployed but its record could not be written to {out} ({exc.strerror or exc}): "
            f"the record is printed on stdout; save it as {out / (str(record['chainId']) + '.json')}"
        ) from None


def print_record(record: dict, path: Path) -> None:
    print(
        f"Modex suite deployed on chain {record['chainId']} from block {record['block']} by {record['deployer']}"
    )
    for name, entry in record["contracts"].items():
        print(f"  {name:<14} {entry['address']}")
    print(f"wrote {path}")


def _brownie_connected() -> bool:
    brownie = sys.modules.get("brownie")  # only `brownie run` has imported it by now
    return brownie is not None and brownie.network.is_connected()


def _abi_entries(abi: list) -> list[str]:
    """An ABI as a sorted list of canonical entries: the same interface whatever the entry order.

    brownie names the constructor entry "constructor" in memory; solc's ABI gives it no name.
    """

    def canonical(entry: dict) -> str:
        if entry.get("type") == "constructor":
            entry = {k: v for k, v in entry.items() if k != "name"}
        return json.dumps(entry, sort_keys=True)

    return sorted(canonical(entry) for entry in abi)


def _deployments_dir(out: Path | None) -> Path:
    return Path(out or os.environ.get(DEPLOYMENTS_DIR_ENV) or paths.DEPLOYMENTS_DIR)


def _defaults(choice: str | None = None) -> dict:
    """The parameters a deployment starts from: ``choice``, else $MODEX_DEPLOY_DEFAULTS, else "dev"."""
    choice = choice or os.environ.get(DEFAULTS_ENV) or "dev"
    if choice not in DEFAULTS:
        raise ConfigError(
            f"{DEFAULTS_ENV}={choice!r} is not one of {', '.join(DEFAULTS)} (e.g. {DEFAULTS_ENV}=public)"
        )
    return dict(DEFAULTS[choice])


def _defaults_table() -> str:
    """--help's epilog: every parameter with its development and public-chain default."""
    none_means = {"fee_recipient": "the deployer", "treasury": "fee_recipient"}

    def shown(params: dict, key: str) -> str:
        return none_means[key] if params[key] is None else str(params[key])

    rows = [
        f"  {key:<20}{shown(suite.DEFAULT_PARAMS, key):>22}{shown(suite.PUBLIC_PARAMS, key):>22}"
        for key in sorted(suite.DEFAULT_PARAMS)
    ]
    return "\n".join(
        [
            f"  {'parameter':<20}{'dev (default)':>22}{'--public-defaults':>22}",
            *rows,
            "amounts in wei, periods in seconds, shares in basis points; contracts/README.md explains each",
        ]
    )


def _env_params() -> dict:
    raw = os.environ.get(PARAMS_ENV)
    if not raw:
        return {}
    try:
        params = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(
            f"{PARAMS_ENV} is not JSON ({exc}); example: '{{\"quorum\": 2}}'"
        ) from None
    if not isinstance(params, dict):
        raise ConfigError(f"{PARAMS_ENV} must be a JSON object, e.g. '{{\"quorum\": 2}}'")
    return params


def _cli_params(pairs: list[str]) -> dict:
    params: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {pair!r} is not KEY=VALUE (e.g. --param quorum=2)")
        # Integers (fee_bps, quorum, ...) as numbers; addresses (fee_recipient, treasury) as text.
        params[key] = int(value) if re.fullmatch(r"-?[0-9]+", value) else value
    return params


if __name__ == "__main__":
    sys.exit(main())
