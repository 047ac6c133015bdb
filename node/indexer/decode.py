"""Raw logs → (contract, event, args): the indexer's decoding, by (contract address, topic0)."""

from __future__ import annotations

from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

PRICE_DIGITS = 78  # uint256 as zero-padded decimal text: sorts like the number, exact


def as_bytes(value) -> bytes:
    """Raw JSON-RPC logs carry 0x-hex strings; web3-formatted ones HexBytes."""
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


def as_int(value) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def u256(value: int) -> str:
    """A uint256 as the index stores it: zero-padded decimal text."""
    return str(int(value)).zfill(PRICE_DIGITS)


def _plain(abi_type: str, value):
    """Decoded ABI value → JSON-friendly: addresses checksummed, bytes as 0x-hex."""
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


class EventDecoder:
    """Decodes raw logs by (contract address, topic0) without web3's per-event machinery."""

    def __init__(self, contracts: dict):
        self.table: dict[tuple[str, bytes], tuple[str, str, list, list]] = {}
        for name, contract in contracts.items():
            for item in contract.abi:
                if item.get("type") != "event" or item.get("anonymous"):
                    continue
                types = ",".join(i["type"] for i in item["inputs"])
                topic = keccak(text=f"{item['name']}({types})")
                indexed = [(i["name"], i["type"]) for i in item["inputs"] if i["indexed"]]
                data = [(i["name"], i["type"]) for i in item["inputs"] if not i["indexed"]]
                self.table[(contract.address.lower(), topic)] = (name, item["name"], indexed, data)
        self.addresses = [c.address for c in contracts.values()]

    def decode(self, raw_log) -> tuple[str, str, dict[str, Any]] | None:
        topics = [as_bytes(t) for t in raw_log["topics"]]
        if not topics:
            return None
        key = (raw_log["address"].lower(), topics[0])
        entry = self.table.get(key)
        if entry is None:
            return None
        contract, event, indexed, data = entry
        args = {}
        for (name, abi_type), topic in zip(indexed, topics[1:], strict=False):
            # Indexed dynamic types are stored as their hash; ours are all static.
            args[name] = _plain(abi_type, abi_decode([abi_type], topic)[0])
        if data:
            values = abi_decode([t for _, t in data], as_bytes(raw_log["data"]))
            for (name, abi_type), value in zip(data, values, strict=False):
                args[name] = _plain(abi_type, value)
        return contract, event, args
