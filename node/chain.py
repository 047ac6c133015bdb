"""The chain client: a Web3 connection plus the four Modex contracts and a safe transaction path.

``connect(config_or_url)`` gives a Web3: "embedded" is one process-wide in-memory chain (py-evm
through eth-tester), a URL an HTTP JSON-RPC node with a timeout ("local", the anvil `modex up`
runs, is reached by the URL it prints). ``Chain`` binds a Web3 to
a deployment record (deployments/<chainId>.json) and sends transactions in three steps, Ape
style — build (pre-flight ``eth_call`` so a revert is decoded into ContractRevert before anything
is sent, then gas, nonce and fees) → sign (a Signer; raw bytes, so the hash is known before
sending) → send and wait for the receipt: ``node.sender.Sender``, the Chain's base class (its
methods are the Chain's). ``node.chainerrors`` words what the node refuses.

Failures: connection errors are retried with bounded exponential backoff, then ChainError naming
the endpoint. A send is retried with the SAME signed bytes (same nonce, same hash), so a
transaction that reached the node before the connection dropped is never signed twice; a receipt
wait that gives up raises ChainError carrying ``tx_hash`` so the caller can look the transaction
up (``wait_receipt``/``find_receipt``) before building a new one.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from eth_typing import HexStr
from eth_utils import to_checksum_address
from eth_utils.exceptions import ValidationError
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.types import FilterParams, RPCEndpoint

from node.amounts import ETH, Token, describe_token
from node.chainerrors import CONNECTION_ERRORS, refusal, revert
from node.compiler import compile_contracts
from node.config import Config
from node.errors import ChainError, ConfigError, InputError
from node.onchain import abi_hash
from node.sender import Sender

log = logging.getLogger(__name__)

CONTRACT_NAMES = ("ModelRegistry", "Marketplace", "Votes", "Validators")


def _function(name: str, inputs: tuple[str, ...], outputs: tuple[str, ...], mutability: str):
    return {
        "type": "function",
        "name": name,
        "inputs": [{"name": f"arg{i}", "type": t} for i, t in enumerate(inputs)],
        "outputs": [{"name": "", "type": t} for t in outputs],
        "stateMutability": mutability,
    }


# The ERC-20 functions the node calls on a payment token, and EIP-2612's permit with the two
# views its signature needs. ``symbol``/``decimals`` are read raw (``Chain.token``): tokens
# answer them in more than one shape.
ERC20_ABI = [
    _function("balanceOf", ("address",), ("uint256",), "view"),
    _function("allowance", ("address", "address"), ("uint256",), "view"),
    _function("approve", ("address", "uint256"), ("bool",), "nonpayable"),
    _function("transfer", ("address", "uint256"), ("bool",), "nonpayable"),
    _function("name", (), ("string",), "view"),
    _function("nonces", ("address",), ("uint256",), "view"),
    _function("DOMAIN_SEPARATOR", (), ("bytes32",), "view"),
    _function(
        "permit",
        ("address", "address", "uint256", "uint256", "uint8", "bytes32", "bytes32"),
        (),
        "nonpayable",
    ),
]
SYMBOL_CALL = HexStr("0x95d89b41")  # symbol()
DECIMALS_CALL = HexStr("0x313ce567")  # decimals()

_embedded_lock = threading.Lock()
_embedded_w3: Web3 | None = None


class _EmbeddedProvider(EthereumTesterProvider):
    """The tester provider made to behave like a JSON-RPC node (anvil) for the node's code.

    - eth-tester is not thread-safe; the UI, indexer and worker threads share one chain: a lock.
    - web3's tester provider turns a revert into a TransactionFailed whose message holds only the
      repr of the revert data; a node answers an error with the data (code 3), from which web3
      raises ContractCustomError / ContractLogicError for node/revert.py to decode. Do the same.
    """

    def __init__(self):
        super().__init__()
        self._request_lock = threading.RLock()

    def make_request(self, method, params):
        # Late: importing eth-tester loads py-evm (about a second); only the embedded chain needs it.
        from eth_tester.exceptions import TransactionFailed

        with self._request_lock:
            try:
                return super().make_request(method, params)
            except ValidationError as exc:
                # py-evm refuses a transaction: answer with the words a node uses.
                message = str(exc)
                match = re.search(r"nonce: Expected (\d+), but got (\d+)", message)
                if match and int(match[2]) < int(match[1]):
                    message = f"nonce too low: {message}"
                elif "balance" in message:
                    message = f"insufficient funds: {message}"
                return {"jsonrpc": "2.0", "id": 0, "error": {"code": -32000, "message": message}}
            except TransactionFailed as exc:
                original = exc.__context__
                raw = original.args[0] if original is not None and original.args else None
                if isinstance(raw, Exception) and raw.args:
                    raw = raw.args[0]
                if isinstance(raw, str) and raw.startswith(("b'", 'b"')):
                    raw = ast.literal_eval(raw)  # eth_call's path hands over repr(bytes)
                error = {"code": 3, "message": "execution reverted"}
                if isinstance(raw, bytes):
                    error["data"] = "0x" + raw.hex()
                elif raw:
                    error["message"] = f"execution reverted: {raw}"
                return {"jsonrpc": "2.0", "id": 0, "error": error}


def embedded_web3() -> Web3:
    """The process-wide in-memory chain (created on first use; ten funded dev accounts)."""
    global _embedded_w3
    with _embedded_lock:
        if _embedded_w3 is None:
            _embedded_w3 = Web3(_EmbeddedProvider())
            # Late: these import py-evm, which only the embedded chain needs.
            from node import (
                evmgas,  # two executions per eth_estimateGas instead of ~13
                evmindex,  # receipts and logs without walking the chain
            )

            evmgas.install(_embedded_w3)
            evmindex.install(_embedded_w3)
        return _embedded_w3


def connect(config_or_url: Config | str, *, timeout: float | None = None) -> Web3:
    """A Web3 for ``"embedded"`` or an http(s) JSON-RPC URL (``timeout`` seconds per request)."""
    if isinstance(config_or_url, Config):
        url, timeout = config_or_url.chain, timeout or config_or_url.rpc_timeout
    else:
        url = config_or_url
    if url == "embedded":
        return embedded_web3()
    if url == "local":
        raise ConfigError(
            'chain "local" is the anvil that `modex up` starts and stops (its state kept in '
            "<data dir>/chain): while `modex up` runs, pass the URL it prints, e.g. "
            "--chain http://127.0.0.1:PORT, or set chain to a node's URL",
            key="chain",
        )
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f'chain endpoint {url!r}: use "embedded" or an http(s) URL', key="chain")
    # Retries are ours (bounded, logged, ending in a ChainError naming the endpoint), not web3's.
    provider = HTTPProvider(
        url, request_kwargs={"timeout": timeout or 10.0}, exception_retry_configuration=None
    )
    return Web3(provider)


def endpoint_of(w3: Web3) -> str:
    provider = w3.provider
    if isinstance(provider, EthereumTesterProvider):
        return "embedded"
    return getattr(provider, "endpoint_uri", None) or type(provider).__name__


def _abi_of(entry) -> list:
    """Accept a bare ABI list or a compiler artifact {"abi": [...], ...}."""
    return entry["abi"] if isinstance(entry, dict) else entry


class _Deployed:
    """A Chain attribute for the suite's contract ``name`` (ConfigError when the record lacks it)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, chain, owner=None):
        return chain.contract(self.name)


class Chain(Sender):
    """Web3 + deployment record: contract objects, calls, events, balances; transactions from
    its base class ``node.sender.Sender``."""

    def __init__(
        self,
        w3: Web3,
        deployment: dict,
        *,
        abis: dict | None = None,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        poll_latency: float = 0.05,
        receipt_timeout: float = 120.0,
    ):
        super().__init__()
        self.w3 = w3
        self.deployment = deployment
        self.endpoint = endpoint_of(w3)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.poll_latency = poll_latency
        self.receipt_timeout = receipt_timeout
        if abis is None:
            abis = compile_contracts()  # cached by source hash: milliseconds
        self.abis = {name: _abi_of(entry) for name, entry in abis.items()}
        self.contracts = {}
        records = deployment.get("contracts") if isinstance(deployment, dict) else None
        if not isinstance(records, dict):
            raise ConfigError('the deployment record has no "contracts" table: deploy again')
        for name, record in records.items():
            if name not in self.abis:
                raise ConfigError(f"no ABI for {name}: compile the contracts (node.compiler)")
            try:
                address = to_checksum_address(record["address"])
            except (KeyError, TypeError, ValueError):
                raise ConfigError(
                    f"the deployment record has no valid address for {name}"
                ) from None
            if record.get("abiHash") and record["abiHash"] != abi_hash(self.abis[name]):
                raise ConfigError(
                    f"{name} at {address} was deployed from other sources than the compiled ones "
                    f"(ABI hash differs): deploy the suite again",
                    contract=name,
                )
            self.contracts[name] = w3.eth.contract(address=address, abi=self.abis[name])
        self._chain_id = deployment.get("chainId")
        self._tokens: dict[str, Token] = {}
        self._tokens_lock = threading.Lock()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, config: Config, *, w3: Web3 | None = None, abis: dict | None = None
    ) -> Chain:
        """Connect, load deployments/<chainId>.json (or config.deployment_file), check it fits."""
        w3 = w3 or connect(config)
        endpoint = endpoint_of(w3)
        probe = cls.__new__(cls)  # only for the retrying RPC helper before the record is known
        probe.endpoint, probe.retries, probe.backoff, probe.max_backoff = (
            endpoint,
            config.rpc_retries,
            0.25,
            4.0,
        )
        chain_id = probe._rpc("eth_chainId", lambda: w3.eth.chain_id)
        if config.chain_id is not None and config.chain_id != chain_id:
            raise ConfigError(
                f"the configuration expects chain {config.chain_id} but the node at {endpoint} is "
                f"chain {chain_id}: fix chain_id or chain in the configuration",
                key="chain_id",
            )
        deployment = load_deployment_file(config.deployment_path(chain_id), chain_id, endpoint)
        chain = cls(
            w3,
            deployment,
            abis=abis,
            retries=config.rpc_retries,
            receipt_timeout=config.receipt_timeout,
        )
        missing = [name for name in CONTRACT_NAMES if name not in chain.contracts]
        if missing:
            raise ConfigError(
                f"the deployment record lacks {', '.join(missing)}: deploy the full suite"
            )
        chain.check_code()
        return chain

    def check_code(self) -> None:
        """ConfigError when a recorded address holds no contract (a stale deployment file)."""
        for name, contract in self.contracts.items():
            code = self._rpc("eth_getCode", partial(self.w3.eth.get_code, contract.address))
            if not code:
                raise ConfigError(
                    f"no contract at {contract.address} ({name}) on chain {self.chain_id} at "
                    f"{self.endpoint}: the deployment file is stale; deploy again "
                    f"(python scripts/deploy.py)"
                )

    # -- properties ---------------------------------------------------------------------------

    def contract(self, name: str):
        try:
            return self.contracts[name]
        except KeyError:
            raise ConfigError(
                f"the deployment record has no {name} contract: deploy the full suite"
            ) from None

    registry = _Deployed("ModelRegistry")
    marketplace = _Deployed("Marketplace")
    votes = _Deployed("Votes")
    validators = _Deployed("Validators")

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._rpc("eth_chainId", lambda: self.w3.eth.chain_id)
        return self._chain_id

    @property
    def addresses(self) -> dict[str, str]:
        return {name: c.address for name, c in self.contracts.items()}

    # -- reads --------------------------------------------------------------------------------

    def _rpc(self, what: str, func: Callable[[], Any]) -> Any:
        """Run one RPC with bounded exponential backoff on connection errors."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return func()
            except CONNECTION_ERRORS as exc:
                if attempt == self.retries:
                    raise ChainError(
                        f"cannot reach the chain node at {self.endpoint} ({what} failed "
                        f"{attempt + 1} times: {type(exc).__name__}); check that it is running "
                        f"and that `chain` in the configuration points at it",
                        endpoint=self.endpoint,
                    ) from exc
                log.warning(
                    "chain node %s: %s failed (%s); retrying in %.2fs",
                    self.endpoint,
                    what,
                    type(exc).__name__,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff)

    def block_number(self) -> int:
        return self._rpc("eth_blockNumber", lambda: self.w3.eth.block_number)

    def get_block(self, block_id="latest"):
        return self._rpc("eth_getBlockByNumber", lambda: self.w3.eth.get_block(block_id))

    def balance(self, address: str) -> int:
        """Balance in wei."""
        return self._rpc(
            "eth_getBalance", lambda: self.w3.eth.get_balance(to_checksum_address(address))
        )

    def erc20(self, address: str):
        """The ERC-20 token at ``address`` as a contract object (ERC20_ABI)."""
        return self.w3.eth.contract(address=to_checksum_address(address), abi=ERC20_ABI)

    def token(self, address: str | None) -> Token:
        """ETH for address zero (or None), else the ERC-20's symbol and decimals, read once per
        token for this client's life (``node.amounts.describe_token``: a token that does not
        answer them is named by its short address, with 18 decimals and a warning)."""
        if address is None or int(address, 16) == 0:
            return ETH
        address = to_checksum_address(address)
        with self._tokens_lock:
            known = self._tokens.get(address)
        if known is not None:
            return known
        token = describe_token(
            address, _raw_view(self, address, SYMBOL_CALL), _raw_view(self, address, DECIMALS_CALL)
        )
        with self._tokens_lock:
            return self._tokens.setdefault(address, token)

    def balance_in(self, token: Token, address: str) -> int:
        """``address``'s balance of ``token``: wei for ETH, else the token's ``balanceOf``."""
        if token.is_eth:
            return self.balance(address)
        return int(self.call(self.erc20(token.address).functions.balanceOf(address)))

    def has_code(self, address: str) -> bool:
        """Whether a contract lives at ``address``."""
        address = to_checksum_address(address)
        return bool(self._rpc("eth_getCode", partial(self.w3.eth.get_code, address)))

    def call(
        self,
        fn,
        *,
        sender: str | None = None,
        value: int = 0,
        gas: int | None = None,
        block="latest",
    ):
        """A view call (or a dry run of a transaction); reverts become ContractRevert."""
        params: dict[str, Any] = {"value": value}
        if gas is not None:
            params["gas"] = gas
        if sender:
            params["from"] = to_checksum_address(sender)
        try:
            return self._rpc(
                f"eth_call {fn.fn_name}", lambda: fn.call(params, block_identifier=block)
            )
        except ContractLogicError as exc:
            raise revert(self, exc, fn) from None
        except Web3RPCError as exc:
            raise refusal(self, exc, fn, sender, value, gas) from None

    def get_logs(self, params: FilterParams, *, raw: bool = False) -> list:
        """``eth_getLogs``. ``raw`` skips web3's result formatting on JSON-RPC nodes (hex strings
        instead of HexBytes/ints: several times faster for bulk reads such as the indexer's)."""
        if not raw or self.endpoint == "embedded":
            return self._rpc("eth_getLogs", lambda: self.w3.eth.get_logs(params))
        request = {k: hex(v) if isinstance(v, int) else v for k, v in params.items()}
        response = self._rpc(
            "eth_getLogs",
            lambda: self.w3.provider.make_request(RPCEndpoint("eth_getLogs"), [request]),
        )
        if response.get("error"):
            raise ChainError(
                f"the chain node at {self.endpoint} refused eth_getLogs: {response['error']}",
                endpoint=self.endpoint,
            )
        return response["result"]

    @property
    def deployment_block(self) -> int:
        """The block the suite was deployed in: none of its events can be older."""
        return int(self.deployment.get("block") or 0)

    def events(
        self, event_name: str, from_block: int | None = None, to_block="latest", **argument_filters
    ) -> list:
        """Decoded events named ``event_name`` from whichever Modex contract declares it, from
        ``from_block`` (default: the deployment's block; a node scans every block it is asked
        for, and the embedded chain decodes every transaction in them)."""
        if from_block is None:
            from_block = self.deployment_block
        found = []
        for contract in self.contracts.values():
            if any(e.get("type") == "event" and e.get("name") == event_name for e in contract.abi):
                event = contract.events[event_name]
                found.extend(
                    self._rpc(
                        f"eth_getLogs {event_name}",
                        partial(
                            event.get_logs,
                            argument_filters=argument_filters or None,
                            from_block=from_block,
                            to_block=to_block,
                        ),
                    )
                )
        if not found and not any(
            e.get("type") == "event" and e.get("name") == event_name
            for c in self.contracts.values()
            for e in c.abi
        ):
            raise InputError(f"no Modex contract declares an event named {event_name!r}")
        return sorted(found, key=lambda e: (e["blockNumber"], e["logIndex"]))

    def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float,
        *,
        interval: float | None = None,
        what: str = "condition",
    ):
        """Poll ``predicate`` until it returns something truthy; return that, or ChainError."""
        deadline = time.monotonic() + timeout
        interval = interval or max(self.poll_latency, 0.05)
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise ChainError(f"{what} not reached within {timeout:g} s on {self.endpoint}")
            time.sleep(interval)


def _raw_view(chain: Chain, address: str, data: HexStr) -> bytes | None:
    """What a view call answers, undecoded; None when it reverts (a contract without the
    function, or no contract: then the answer is empty)."""
    try:
        answer = chain._rpc(
            f"eth_call {data}", lambda: chain.w3.eth.call({"to": address, "data": data})
        )
    except (ContractLogicError, Web3RPCError):
        return None
    return bytes(answer)


def load_deployment_file(path: Path, chain_id: int, endpoint: str) -> dict:
    """Read a deployment record and check it belongs to ``chain_id``; ConfigError otherwise."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"no deployment for chain {chain_id} at {path}: deploy the contracts first "
            f"(python scripts/deploy.py) or set deployment_file in the configuration",
            key="deployment_file",
        ) from None
    except ValueError as exc:
        raise ConfigError(
            f"deployment file {path} is not valid JSON: {exc}", key="deployment_file"
        ) from None
    recorded = record.get("chainId") if isinstance(record, dict) else None
    if recorded != chain_id:
        raise ConfigError(
            f"deployment file {path} is for chain {recorded} but the node at {endpoint} is chain "
            f"{chain_id}: point `chain` at the right node or use that chain's deployment file",
            key="deployment_file",
        )
    return record
