"""Decode reverts of the Modex contracts into ``ContractRevert`` with a sentence a person can act on.

A revert carries 4 bytes of selector and ABI-encoded arguments. The selector table is built from
every compiled Modex ABI (which includes the OpenZeppelin errors the contracts inherit, e.g.
``ERC721NonexistentToken``, ``OwnableUnauthorizedAccount``, ``ReentrancyGuardReentrantCall``) plus
Solidity's own ``Error(string)`` and ``Panic(uint256)``.

    try:
        ...
    except Exception as exc:
        raise as_revert(exc) or exc

or simply ``with decoded_reverts(): contract.functions.buy(...).transact(...)``.
The ContractRevert's ``context`` holds ``error`` (name), ``args`` (dict), ``selector`` and ``data``;
its message is the error's sentence from node/revert_sentences.py (``MESSAGES``).
"""

from __future__ import annotations

import ast
import contextlib
import logging
from collections.abc import Iterable
from functools import lru_cache

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak, to_checksum_address
from web3.exceptions import ContractLogicError

from node.compiler import compile_contracts
from node.errors import ContractRevert
from node.revert_sentences import MESSAGES

log = logging.getLogger(__name__)

ERROR_STRING = {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]}
PANIC = {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]}


def _selector(error_abi: dict) -> str:
    signature = f"{error_abi['name']}({','.join(_canonical_type(i) for i in error_abi['inputs'])})"
    return "0x" + keccak(text=signature)[:4].hex()


def _canonical_type(item: dict) -> str:
    if item["type"].startswith("tuple"):
        return (
            "(" + ",".join(_canonical_type(c) for c in item["components"]) + ")" + item["type"][5:]
        )
    return item["type"]


def error_table(abis: Iterable[list]) -> dict[str, dict]:
    """``{selector: error ABI}`` over the given ABIs plus Error(string) and Panic(uint256)."""
    table = {_selector(ERROR_STRING): ERROR_STRING, _selector(PANIC): PANIC}
    for abi in abis:
        for item in abi:
            if item.get("type") == "error":
                table[_selector(item)] = item
    return table


@lru_cache(maxsize=1)
def _modex_table() -> dict[str, dict]:
    return error_table(a["abi"] for a in compile_contracts().values())


def decode_revert(data, abis: Iterable[list] | None = None) -> ContractRevert:
    """Turn revert data (hex string or bytes) into a ContractRevert; unknown selectors are reported raw."""
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
    hex_data = "0x" + raw.hex()
    table = error_table(abis) if abis is not None else _modex_table()
    selector = "0x" + raw[:4].hex()
    error_abi = table.get(selector)
    if len(raw) < 4 or error_abi is None:
        reason = "without a reason" if not raw else f"with unknown error data {hex_data}"
        return ContractRevert(
            f"The transaction was reverted {reason}.",
            error=None,
            args={},
            selector=selector if raw else None,
            data=hex_data,
        )
    names = [i["name"] or f"arg{n}" for n, i in enumerate(error_abi["inputs"])]
    try:
        values = decode([_canonical_type(i) for i in error_abi["inputs"]], raw[4:])
    except (
        DecodingError,
        ValueError,
        OverflowError,
    ) as exc:  # malformed data: report the name, never crash the caller
        return ContractRevert(
            f"The transaction was reverted with {error_abi['name']} (undecodable: {exc}).",
            error=error_abi["name"],
            args={},
            selector=selector,
            data=hex_data,
        )
    types = [i["type"] for i in error_abi["inputs"]]
    args = dict(zip(names, (_plain(v, t) for v, t in zip(values, types, strict=True)), strict=True))
    render = MESSAGES.get(error_abi["name"])
    message = render(args) if render else f"The contract refused with {error_abi['name']}{args}."
    return ContractRevert(
        message, error=error_abi["name"], args=args, selector=selector, data=hex_data
    )


def as_revert(exc: BaseException, abis: Iterable[list] | None = None) -> ContractRevert | None:
    """The ContractRevert for a revert exception, or None if ``exc`` is not a revert.

    Understands web3's ContractLogicError family (JSON-RPC nodes such as anvil: ``.data`` is the hex
    revert data) and eth-tester's TransactionFailed (the embedded chain: the raw bytes travel in the
    exception or in the one it was raised from).
    """
    if isinstance(exc, ContractRevert):
        return exc
    data = _revert_data(exc)
    if data is not None:
        decoded = decode_revert(data, abis)
    elif isinstance(exc, ContractLogicError) or _is_tester_failure(exc):
        decoded = ContractRevert(
            f"The transaction was reverted: {getattr(exc, 'message', None) or exc}.",
            error=None,
            args={},
            selector=None,
            data=None,
        )
    else:
        return None
    decoded.__cause__ = exc
    return decoded


def _revert_data(raised: BaseException) -> bytes | str | None:
    exc: BaseException | None = raised
    seen = 0
    while exc is not None and seen < 8:
        seen += 1
        if isinstance(exc, ContractLogicError):
            data = exc.data.get("data") if isinstance(exc.data, dict) else exc.data
            if isinstance(data, str) and data.startswith("0x"):
                return data
        elif _is_tester_failure(exc) or type(exc).__name__ == "Revert":
            arg = exc.args[0] if exc.args else None
            if isinstance(arg, BaseException) and arg.args:
                arg = arg.args[0]
            if isinstance(arg, bytes):
                return arg
            if isinstance(arg, str):  # eth_call on eth-tester: only the bytes' repr survives
                literal = arg.removeprefix("execution reverted: ")
                if literal[:2] in ("b'", 'b"'):
                    try:
                        value = ast.literal_eval(literal)
                    except (ValueError, SyntaxError):
                        value = None
                    if isinstance(value, bytes):
                        return value
        exc = exc.__cause__ or exc.__context__
    return None


def _is_tester_failure(exc: BaseException) -> bool:
    return type(exc).__name__ == "TransactionFailed" and type(exc).__module__.startswith(
        "eth_tester"
    )


@contextlib.contextmanager
def decoded_reverts(abis: Iterable[list] | None = None):
    """Re-raise web3 revert exceptions inside the block as decoded ContractRevert."""
    try:
        yield
    except Exception as exc:
        decoded = as_revert(exc, abis)
        if decoded is None or decoded is exc:
            raise
        raise decoded from exc


def _plain(value, abi_type: str = ""):
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
