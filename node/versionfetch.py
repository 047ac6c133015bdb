"""A licence holder's keys to later versions (issue 15 §1), for ``node.fetch.fetch_model``.

A purchase's own key (``KeyDelivered``) opens the version that was the latest when it was
delivered; the seller's worker delivers each later version's key to the holders its update
window covers (``Marketplace.deliverVersionKeys``: a ``VersionKeyDelivered`` event per holder,
wrapped with ``keywrap.version_key_info``, docs/formats.md §4). This module finds those keys,
unwraps one, and says in words why a version has none for this holder.
"""

from __future__ import annotations

from node import versions
from node.content import keywrap
from node.errors import KeyDeliveryError
from node.revert_sentences import when


def later_version_keys(chain, account: str, model_id: int) -> dict[int, bytes]:
    """version → the wrapped key ``VersionKeyDelivered`` gave ``account`` for it (2, 3, ...)."""
    events = chain.events("VersionKeyDelivered", modelId=model_id, account=account)
    return {int(ev["args"]["version"]): bytes(ev["args"]["wrappedKey"]) for ev in events}


def unwrap_version_key(chain, signer, model_id: int, version: int, wrapped: bytes) -> bytes:
    """The content key of ``version`` from its ``VersionKeyDelivered`` key to ``signer``."""
    secret, _public = keywrap.derive_x25519(signer, chain.chain_id)
    info = keywrap.version_key_info(
        chain.chain_id, chain.marketplace.address, model_id, version, signer.address
    )
    return keywrap.unwrap_with_info(wrapped, secret, info=info)


def no_key_for(chain, account: str, model_id: int, purchase_id: int, opens: int, version: int):
    """The KeyDeliveryError that says why ``account`` holds no key to ``version``: an earlier
    version than its purchase's, a version its update window does not cover, or one whose key
    the seller's worker has not delivered yet."""
    fetch_opens = f"your purchase's key opens version {opens}: fetch that (leave out --version)"
    if version < opens:
        return KeyDeliveryError(
            f"the key of purchase {purchase_id} opens version {opens} of model {model_id}, not "
            f"version {version}: each version has its own key, and earlier versions' keys are "
            f"not delivered to later buyers; fetch version {opens} (leave out --version)",
            purchase_id=purchase_id,
        )
    market = chain.marketplace.functions
    if not chain.call(market.entitledTo(model_id, version, account)):
        published = versions.get_version(chain, model_id, version).published_at
        window = int(chain.call(chain.registry.functions.updateWindow(model_id)))
        return KeyDeliveryError(
            f"your licence of model {model_id} (purchase {purchase_id}) is not entitled to "
            f"version {version}, published {when(published)}: the listing's update window is "
            f"{versions.update_window_words(window)}, so its key is never delivered to you; "
            f"{fetch_opens}",
            purchase_id=purchase_id,
        )
    return KeyDeliveryError(
        f"your licence of model {model_id} is entitled to version {version}, but the seller's "
        f"worker has not delivered its key yet: try again later, or {fetch_opens}",
        purchase_id=purchase_id,
    )
