"""What the stores' HTTP clients (``kuborpc.KuboRpc``, ``gateway.GatewaySource``) say alike."""

from __future__ import annotations

from node.errors import StoreError


def no_answer(server: str, url: str, timeout: float, cid: str | None) -> StoreError:
    """The error for a request to ``url`` that ``server`` ("the IPFS daemon at", "the IPFS
    gateway") did not answer within ``timeout`` seconds (it may be looking for ``cid``)."""
    return StoreError(f"{server} {url} did not answer within {timeout} s", endpoint=url, cid=cid)
