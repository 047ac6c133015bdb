"""A listing's versions as the chain records them (issue 15 §1): version 1 is the listing itself;
the owner publishes new weights with ``ModelRegistry.publishVersion`` (``node.publish.
publish_version``) and every version keeps its own model hash, metadata CID, publication time and
work-digest claim on-chain. Each version is sealed with a fresh content key, so a
licence holder reads a new version only once its key is delivered to them. ``delivered_version``
says which version a purchase's delivered key opens: the latest one when its ``KeyDelivered``
was mined (the worker wraps the latest version's key for a buyer).
"""

from __future__ import annotations

from dataclasses import dataclass

from node.errors import InputError
from node.protocol import ModelStatus

# ModelRegistry.updateWindow's "forever" (type(uint256).max).
FOREVER = 2**256 - 1


def update_window_words(seconds: int) -> str:
    """A model's update window (``ModelRegistry.updateWindow``) as a person reads it."""
    if seconds == FOREVER:
        return "forever"
    if seconds == 0:
        return "0 (only the version bought)"
    return f"{seconds} s after each purchase"


@dataclass(frozen=True)
class Version:
    """One version of a listing as the chain records it; ``published_at`` in Unix seconds."""

    number: int
    model_hash: bytes
    metadata_cid: str
    published_at: int


def version_count(chain, model_id: int) -> int:
    """How many versions the listing has (1: the listing only); ChainError for an unknown id."""
    return int(chain.call(chain.registry.functions.versionCount(model_id)))


def get_version(chain, model_id: int, number: int) -> Version:
    """Version ``number`` of the listing; InputError naming the versions there are otherwise."""
    count = version_count(chain, model_id)
    if not 1 <= number <= count:
        raise InputError(
            f"model {model_id} has versions 1 to {count}, not {number}: "
            f"`modex versions {model_id}` lists them",
            what="--version",
        )
    model_hash, metadata_cid, published_at = chain.call(
        chain.registry.functions.versionOf(model_id, number)
    )
    if number == 1:  # the registry keeps no time for the listing: its ModelListed block has it
        published_at = _listed_at(chain, model_id)
    return Version(number, bytes(model_hash), metadata_cid, int(published_at))


def content_of(chain, model_id: int, number: int) -> tuple[bytes, str]:
    """(model hash, metadata CID) of version ``number``: all that fetching it needs."""
    model_hash, metadata_cid, _published_at = chain.call(
        chain.registry.functions.versionOf(model_id, number)
    )
    return bytes(model_hash), metadata_cid


def list_versions(chain, model_id: int) -> list[Version]:
    """Every version of the listing, oldest first."""
    return [get_version(chain, model_id, n) for n in range(1, version_count(chain, model_id) + 1)]


def _listed_at(chain, model_id: int) -> int:
    listed = chain.events("ModelListed", modelId=model_id)
    if not listed:
        return 0
    return int(chain.get_block(listed[-1]["blockNumber"])["timestamp"])


def delivered_version(
    chain, model_id: int, delivered_block: int, delivered_index: int, *, published=None
) -> int:
    """The version a buyer's key delivered at (block, log index) opens: the latest one then.
    ``published``: VersionPublished events already read (of any models), to read none again."""
    if published is None:
        published = chain.events("VersionPublished", modelId=model_id)
    before = [
        ev
        for ev in published
        if int(ev["args"]["modelId"]) == model_id
        and (ev["blockNumber"], ev["logIndex"]) < (delivered_block, delivered_index)
    ]
    return max((int(ev["args"]["version"]) for ev in before), default=1)


def status_of(chain, model_id: int, version: int) -> ModelStatus:
    """A version's validation status (``Validators.statusAt``): what its validation cycle
    settled; Unverified while it runs and for a version no cycle attested (a status never
    carries over to other weights)."""
    return ModelStatus(chain.call(chain.validators.functions.statusAt(model_id, version)))


def set_update_window(chain, signer, model_id: int, seconds: int) -> str:
    """``ModelRegistry.setUpdateWindow``: how long after a purchase its buyer receives new
    versions (0: only the version bought; ``FOREVER``). Returns the transaction hash."""
    if not 0 <= seconds <= FOREVER:
        raise InputError(f"an update window is 0 to {FOREVER} seconds, not {seconds}")
    receipt = chain.transact(chain.registry.functions.setUpdateWindow(model_id, seconds), signer)
    return "0x" + bytes(receipt["transactionHash"]).hex()
